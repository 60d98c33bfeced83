/* Batched receive for the RTP sockets of one process (docs/architecture.md, "Hot path").
 *
 * poll(epfd, max_events, per_socket) waits for nothing (timeout 0): it takes the ready
 * sockets of an epoll set and drains each with recvmmsg(2), at most per_socket datagrams,
 * returning (count, [(fd, [datagram, ...], [source, ...]), ...], None).  recv(fd, limit) does the same
 * for one socket.  A source is the sender's address as bytes: 4 address + 2 port octets
 * for IPv4, 16 + 2 for IPv6, both in network order; consecutive datagrams from one sender
 * share one object, so the caller can map it to a host and port with one dict lookup.
 *
 * poll_walk(epfd, max_events, per_socket, streams, sources, now) reads the same way and
 * also does the per-packet path of the common case itself: for a socket whose stream
 * (streams: fd -> StreamState, after bind_stream()) is latched to the sender (sources:
 * source -> (host, port), the caller's map) and not captured, each datagram is decrypted
 * when the stream is SRTP with one key held (libsrtp's srtp_unprotect from pylibsrtp, on
 * the stream's own context) and placed by srs/rtp/_rtpwalk.c straight from the buffer (a
 * decrypted packet the walk leaves goes to TrackTimeline.receive_into), and the stream's
 * last_packet_s set: all that StreamState.receive does for it.  From the first datagram
 * of a socket that is not such (another source, SRTCP, a packet libsrtp refuses, one the
 * walk leaves in plain RTP), the rest of that socket's datagrams are returned as poll()
 * returns them, for the Python path: (count read, [(fd, datagrams, sources), ...],
 * the first exception a stream's Python code raised or None).
 *
 * Without this module srs/server/media.py does the same with select.epoll and
 * socket.recvfrom; both return the same datagrams and sources.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "../rtp/_rtpwalk.h"

#define BATCH 32                 /* datagrams per recvmmsg call */
#define SLOT_BYTES 65536         /* a whole UDP datagram always fits: nothing is truncated */
#define MAX_EVENTS 1024

static char slots[BATCH][SLOT_BYTES];
static struct sockaddr_storage names[BATCH];
static struct mmsghdr headers[BATCH];
static struct iovec vectors[BATCH];
static struct epoll_event events[MAX_EVENTS];

/* StreamState's slots (bind_stream), SrtpInbound's and SrtpReceiver's, libsrtp's
 * srtp_unprotect inside pylibsrtp (0: SRTP streams take the Python path), and the walk of
 * srs/rtp/_rtpwalk.c. */
static PyTypeObject *stream_type, *inbound_type, *receiver_type;
static rtpwalk_api *walk_api;
static Py_ssize_t st_latched, st_capture, st_srtp, st_last_packet, st_timeline, st_pending;
static Py_ssize_t in_previous, in_current, rx_native;
static Py_ssize_t max_srtp_bytes;
typedef int (*unprotect_fn)(void *ctx, void *packet, int *len);
static unprotect_fn srtp_unprotect_at;
static PyObject *receive_into_name;
static unsigned char plain[SLOT_BYTES];
/* The buffers above are the module's, one set for the process: a call made while another
 * runs -- from the Python code poll_walk calls (receive_into, a finalizer) or from another
 * thread while that code runs without the GIL -- would overwrite datagrams not yet
 * handed over.  It is refused. */
static int busy;

static int enter(void)
{
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "_rtprecv is already reading: calls must not overlap");
        return -1;
    }
    busy = 1;
    return 0;
}

typedef struct {
    PyObject *stream;   /* the socket's StreamState */
    PyObject *sources;  /* source key -> (host, port) */
    PyObject *now_obj;
    double now;
    int slow;           /* a datagram went to the Python path: so do the rest */
    PyObject **error;   /* the first exception of a stream's Python code, raised later */
} fast_ctx;

/* The exception being raised, taken out of the error indicator. */
static PyObject *take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

static void set_now(fast_ctx *ctx)
{
    PyObject *stream = ctx->stream;
    PyObject *old = SLOT(stream, st_last_packet);
    SLOT(stream, st_last_packet) = Py_NewRef(ctx->now_obj);
    Py_XDECREF(old);
}

/* The libsrtp context of a stream's SRTP when only one key is held, else NULL. */
static void *srtp_context(PyObject *srtp)
{
    if (srtp_unprotect_at == NULL || !Py_IS_TYPE(srtp, inbound_type)
        || SLOT(srtp, in_previous) != Py_None)
        return NULL;
    PyObject *current = SLOT(srtp, in_current);
    if (current == NULL || !Py_IS_TYPE(current, receiver_type))
        return NULL;
    PyObject *native = SLOT(current, rx_native);
    if (native == NULL || !PyLong_CheckExact(native))
        return NULL;
    void *context = PyLong_AsVoidPtr(native);
    if (context == NULL)
        PyErr_Clear();
    return context;
}

/* TrackTimeline.receive_into for the decrypted packet in `plain`: 1, or -1 a Python error. */
static int python_receive(fast_ctx *ctx, PyObject *timeline, PyObject *pending, int length)
{
    PyObject *packet = PyBytes_FromStringAndSize((const char *)plain, length);
    if (packet == NULL)
        return -1;
    PyObject *done = PyObject_CallMethodObjArgs(timeline, receive_into_name, packet,
                                                ctx->now_obj, pending, NULL);
    Py_DECREF(packet);
    if (done == NULL) {
        /* A bug in the stream's code: the rest of this socket's datagrams are dropped, as
         * an exception ends StreamState.receive_many, and the error is raised once every
         * socket is served. */
        if (*ctx->error == NULL)
            *ctx->error = take_exception();
        else
            PyErr_Clear();
        ctx->slow = 2;
        return 1;
    }
    Py_DECREF(done);
    return 1;
}

/* StreamState.receive for a datagram from the latched source of a stream that is not
 * captured: 1 handled, 0 for the Python path, -1 a Python error.  SRTP (one key held, not
 * SRTCP) is decrypted here with the stream's own libsrtp context; a packet libsrtp refuses
 * goes to the Python path, which refuses and counts it in turn.  A decrypted packet the
 * walk does not place goes to TrackTimeline.receive_into, as StreamState.receive does. */
static int fast_one(fast_ctx *ctx, PyObject *key, const char *data, Py_ssize_t size)
{
    PyObject *stream = ctx->stream;
    if (SLOT(stream, st_capture) != Py_None)
        return 0;
    PyObject *latched = SLOT(stream, st_latched);
    PyObject *source = PyDict_GetItemWithError(ctx->sources, key);
    if (source == NULL || latched == NULL || latched == Py_None) {
        PyErr_Clear();
        return 0;
    }
    if (source != latched) {
        int same = PyObject_RichCompareBool(source, latched, Py_EQ);
        if (same != 1) {
            PyErr_Clear();
            return 0;
        }
    }
    PyObject *timeline = SLOT(stream, st_timeline), *pending = SLOT(stream, st_pending);
    PyObject *srtp = SLOT(stream, st_srtp);
    if (timeline == NULL || pending == NULL || srtp == NULL)
        return 0;
    if (srtp == Py_None) {
        int r = walk_api->walk_one(timeline, data, size, ctx->now_obj, ctx->now, pending);
        if (r == 1)
            set_now(ctx);
        return r;
    }
    void *context = srtp_context(srtp);
    if (context == NULL || size > max_srtp_bytes || size < 2
        || ((unsigned char)data[1] >= 192 && (unsigned char)data[1] <= 223))
        return 0;
    memcpy(plain, data, (size_t)size);
    int length = (int)size;
    if (srtp_unprotect_at(context, plain, &length) != 0 || length < 0 || length > size)
        return 0;
    /* Held: releasing the old last_packet_s may run Python code that replaces them. */
    Py_INCREF(timeline);
    Py_INCREF(pending);
    set_now(ctx);
    int r = walk_api->walk_one(timeline, (const char *)plain, length, ctx->now_obj, ctx->now,
                               pending);
    if (r == 0)
        r = python_receive(ctx, timeline, pending, length);
    Py_DECREF(timeline);
    Py_DECREF(pending);
    return r;
}

static PyObject *source_key(const struct sockaddr_storage *name)
{
    unsigned char raw[18];
    if (name->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)name;
        memcpy(raw, &v4->sin_addr, 4);
        memcpy(raw + 4, &v4->sin_port, 2);
        return PyBytes_FromStringAndSize((const char *)raw, 6);
    }
    if (name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)name;
        memcpy(raw, &v6->sin6_addr, 16);
        memcpy(raw + 16, &v6->sin6_port, 2);
        return PyBytes_FromStringAndSize((const char *)raw, 18);
    }
    return PyBytes_FromStringAndSize(NULL, 0);
}

static int same_source(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port
            && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

/* Append up to `limit` datagrams of `fd` to `datagrams` and `sources`; -1 on a Python
 * error.  A socket error other than EAGAIN (an ICMP error queued on the socket) ends the
 * read like EAGAIN: nothing to do for a datagram we never sent. */
static int read_socket(int fd, int limit, PyObject *datagrams, PyObject *sources,
                       fast_ctx *ctx)
{
    struct sockaddr_storage last;
    PyObject *last_key = NULL;
    int got = 0;
    while (got < limit) {
        int want = limit - got < BATCH ? limit - got : BATCH;
        for (int i = 0; i < want; i++) {
            vectors[i].iov_base = slots[i];
            vectors[i].iov_len = SLOT_BYTES;
            memset(&headers[i].msg_hdr, 0, sizeof headers[i].msg_hdr);
            headers[i].msg_hdr.msg_iov = &vectors[i];
            headers[i].msg_hdr.msg_iovlen = 1;
            headers[i].msg_hdr.msg_name = &names[i];
            headers[i].msg_hdr.msg_namelen = sizeof names[i];
        }
        int n = recvmmsg(fd, headers, (unsigned int)want, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (last_key == NULL || !same_source(&last, &names[i])) {
                Py_XDECREF(last_key);
                last_key = source_key(&names[i]);
                if (last_key == NULL)
                    return -1;
                last = names[i];
            }
            if (ctx != NULL && ctx->slow == 2)
                continue; /* after a stream's error: dropped (see fast_one) */
            if (ctx != NULL && !ctx->slow) {
                int r = fast_one(ctx, last_key, slots[i], headers[i].msg_len);
                if (r < 0) {
                    Py_DECREF(last_key);
                    return -1;
                }
                if (r == 1)
                    continue;
                ctx->slow = 1;
            }
            PyObject *data = PyBytes_FromStringAndSize(slots[i], headers[i].msg_len);
            if (data == NULL || PyList_Append(datagrams, data) < 0
                || PyList_Append(sources, last_key) < 0) {
                Py_XDECREF(data);
                Py_DECREF(last_key);
                return -1;
            }
            Py_DECREF(data);
        }
        got += n;
        if (n < want)
            break;
    }
    Py_XDECREF(last_key);
    return got;
}

static PyObject *rtprecv_recv(PyObject *self, PyObject *args)
{
    int fd, limit;
    (void)self;
    if (!PyArg_ParseTuple(args, "ii", &fd, &limit))
        return NULL;
    if (enter() < 0)
        return NULL;
    PyObject *datagrams = PyList_New(0);
    PyObject *sources = PyList_New(0);
    int got = datagrams != NULL && sources != NULL
        ? read_socket(fd, limit, datagrams, sources, NULL) : -1;
    busy = 0;
    if (got < 0) {
        Py_XDECREF(datagrams);
        Py_XDECREF(sources);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, datagrams, sources);
    Py_DECREF(datagrams);
    Py_DECREF(sources);
    return out;
}

static PyObject *rtprecv_bind_stream(PyObject *self, PyObject *args)
{
    PyTypeObject *type, *inbound, *receiver;
    PyObject *unprotect;
    Py_ssize_t max_bytes;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!O!n", &PyType_Type, &type, &PyType_Type, &inbound,
                          &PyType_Type, &receiver, &PyLong_Type, &unprotect, &max_bytes))
        return NULL;
    rtpwalk_api *api = PyCapsule_Import(RTPWALK_CAPSULE, 0);
    if (api == NULL)
        return NULL;
    void *unprotect_at = PyLong_AsVoidPtr(unprotect);
    if (unprotect_at == NULL && PyErr_Occurred())
        return NULL;
    if ((st_latched = slot_offset(type, "latched")) < 0
        || (st_capture = slot_offset(type, "capture")) < 0
        || (st_srtp = slot_offset(type, "srtp")) < 0
        || (st_last_packet = slot_offset(type, "last_packet_s")) < 0
        || (st_timeline = slot_offset(type, "timeline")) < 0
        || (st_pending = slot_offset(type, "pending")) < 0
        || (in_previous = slot_offset(inbound, "_previous")) < 0
        || (in_current = slot_offset(inbound, "_current")) < 0
        || (rx_native = slot_offset(receiver, "native_context")) < 0)
        return NULL;
    if (max_bytes < 0 || max_bytes > SLOT_BYTES)
        max_bytes = SLOT_BYTES;
    if (receive_into_name == NULL
        && (receive_into_name = PyUnicode_InternFromString("receive_into")) == NULL)
        return NULL;
    walk_api = api;
    max_srtp_bytes = max_bytes;
    srtp_unprotect_at = (unprotect_fn)unprotect_at;
    Py_INCREF(type);
    Py_XSETREF(stream_type, type);
    Py_INCREF(inbound);
    Py_XSETREF(inbound_type, inbound);
    Py_INCREF(receiver);
    Py_XSETREF(receiver_type, receiver);
    Py_RETURN_NONE;
}

/* The ready sockets of `epfd`, each read; with `streams`, the common case placed (see the
 * top of this file).  Returns (count read, [(fd, datagrams, sources)] not placed). */
static PyObject *poll_sockets(int epfd, int max_events, int per_socket, PyObject *streams,
                              PyObject *sources, PyObject *now_obj)
{
    if (max_events < 1 || max_events > MAX_EVENTS)
        max_events = MAX_EVENTS;
    int n = epoll_wait(epfd, events, max_events, 0);
    if (n < 0) {
        if (errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
        n = 0;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    PyObject *error = NULL;
    long count = 0;
    for (int i = 0; i < n; i++) {
        int fd = events[i].data.fd;
        PyObject *stream = NULL;
        if (streams != NULL) {
            PyObject *fd_obj = PyLong_FromLong(fd);
            stream = fd_obj ? PyDict_GetItemWithError(streams, fd_obj) : NULL;
            Py_XDECREF(fd_obj);
            if (PyErr_Occurred()) {
                Py_DECREF(out);
                Py_XDECREF(error);
                return NULL;
            }
        }
        fast_ctx ctx = {stream, sources, now_obj, now_obj ? PyFloat_AS_DOUBLE(now_obj) : 0.0, 0,
                        &error};
        fast_ctx *use = stream != NULL && Py_IS_TYPE(stream, stream_type) ? &ctx : NULL;
        PyObject *datagrams = PyList_New(0);
        PyObject *keys = PyList_New(0);
        PyObject *item = NULL;
        int got = -1;
        if (datagrams != NULL && keys != NULL) {
            Py_XINCREF(stream);
            got = read_socket(fd, per_socket, datagrams, keys, use);
            Py_XDECREF(stream);
        }
        if (got >= 0) {
            count += got;
            if (PyList_GET_SIZE(datagrams) == 0) {
                Py_DECREF(datagrams);
                Py_DECREF(keys);
                continue;
            }
            item = Py_BuildValue("(iOO)", fd, datagrams, keys);
        }
        Py_XDECREF(datagrams);
        Py_XDECREF(keys);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            Py_XDECREF(error);
            return NULL;
        }
        Py_DECREF(item);
    }
    return Py_BuildValue("(lNN)", count, out, error != NULL ? error : Py_NewRef(Py_None));
}

/* poll_sockets, refused while another call reads. */
static PyObject *poll_once(int epfd, int max_events, int per_socket, PyObject *streams,
                           PyObject *sources, PyObject *now_obj)
{
    if (enter() < 0)
        return NULL;
    PyObject *out = poll_sockets(epfd, max_events, per_socket, streams, sources, now_obj);
    busy = 0;
    return out;
}

static PyObject *rtprecv_poll(PyObject *self, PyObject *args)
{
    int epfd, max_events, per_socket;
    (void)self;
    if (!PyArg_ParseTuple(args, "iii", &epfd, &max_events, &per_socket))
        return NULL;
    return poll_once(epfd, max_events, per_socket, NULL, NULL, NULL);
}

static PyObject *rtprecv_poll_walk(PyObject *self, PyObject *args)
{
    int epfd, max_events, per_socket;
    PyObject *streams, *sources, *now_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "iiiO!O!O!", &epfd, &max_events, &per_socket, &PyDict_Type,
                          &streams, &PyDict_Type, &sources, &PyFloat_Type, &now_obj))
        return NULL;
    if (stream_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "poll_walk() before bind_stream()");
        return NULL;
    }
    return poll_once(epfd, max_events, per_socket, streams, sources, now_obj);
}

static PyMethodDef methods[] = {
    {"poll", rtprecv_poll, METH_VARARGS,
     "poll(epfd, max_events, per_socket) -> (count, [(fd, datagrams, sources)], None)"},
    {"poll_walk", rtprecv_poll_walk, METH_VARARGS,
     "poll_walk(epfd, max_events, per_socket, streams, sources, now) -> (count, rest, error)"},
    {"bind_stream", rtprecv_bind_stream, METH_VARARGS,
     "bind_stream(StreamState, SrtpInbound, SrtpReceiver, srtp_unprotect address, max SRTP"
     " bytes): find their slots and the compiled timeline walk"},
    {"recv", rtprecv_recv, METH_VARARGS,
     "recv(fd, limit) -> (datagrams, sources) queued in one socket, until EAGAIN or limit"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtprecv", "Batched RTP receive: epoll_wait + recvmmsg.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rtprecv(void)
{
    return PyModule_Create(&module);
}
