/* Batched receive for the RTP sockets of one process (docs/architecture.md, "Hot path").
 *
 * poll(epfd, max_events, per_socket) waits for nothing (timeout 0): it takes the ready
 * sockets of an epoll set and drains each with recvmmsg(2), at most per_socket datagrams,
 * returning [(fd, [datagram, ...], [source, ...]), ...].  recv(fd, limit) does the same
 * for one socket.  A source is the sender's address as bytes: 4 address + 2 port octets
 * for IPv4, 16 + 2 for IPv6, both in network order; consecutive datagrams from one sender
 * share one object, so the caller can map it to a host and port with one dict lookup.
 *
 * poll_walk(epfd, max_events, per_socket, streams, sources, now) reads the same way and
 * also does the per-packet path of the common case itself: for a socket whose stream
 * (streams: fd -> StreamState, after bind_stream(StreamState)) is latched to the sender
 * (sources: source -> (host, port), the caller's map), neither captured nor SRTP, each
 * datagram that srs/rtp/_rtpwalk.c places is placed straight from the receive buffer and
 * the stream's last_packet_s set, which is all StreamState.receive does for it.  From the
 * first datagram of a socket that is not such, the rest of that socket's datagrams are
 * returned as poll() returns them, for the Python path: (count read, [(fd, datagrams,
 * sources), ...]).
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

/* StreamState's slots (bind_stream) and the walk of srs/rtp/_rtpwalk.c. */
static PyTypeObject *stream_type;
static rtpwalk_api *walk_api;
static Py_ssize_t st_latched, st_capture, st_srtp, st_last_packet, st_timeline, st_pending;

typedef struct {
    PyObject *stream;   /* the socket's StreamState */
    PyObject *sources;  /* source key -> (host, port) */
    PyObject *now_obj;
    double now;
    int slow;           /* a datagram went to the Python path: so do the rest */
} fast_ctx;

/* StreamState.receive for a datagram from the latched source of a plain stream: 1 placed,
 * 0 for the Python path, -1 a Python error. */
static int fast_one(fast_ctx *ctx, PyObject *key, const char *data, Py_ssize_t size)
{
    PyObject *stream = ctx->stream;
    if (SLOT(stream, st_capture) != Py_None || SLOT(stream, st_srtp) != Py_None)
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
    if (timeline == NULL || pending == NULL)
        return 0;
    int r = walk_api->walk_one(timeline, data, size, ctx->now_obj, ctx->now, pending);
    if (r == 1) {
        PyObject *old = SLOT(stream, st_last_packet);
        SLOT(stream, st_last_packet) = Py_NewRef(ctx->now_obj);
        Py_XDECREF(old);
    }
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
    PyObject *datagrams = PyList_New(0);
    PyObject *sources = PyList_New(0);
    if (datagrams == NULL || sources == NULL || read_socket(fd, limit, datagrams, sources, NULL) < 0) {
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
    PyTypeObject *type;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!", &PyType_Type, &type))
        return NULL;
    rtpwalk_api *api = PyCapsule_Import(RTPWALK_CAPSULE, 0);
    if (api == NULL)
        return NULL;
    if ((st_latched = slot_offset(type, "latched")) < 0
        || (st_capture = slot_offset(type, "capture")) < 0
        || (st_srtp = slot_offset(type, "srtp")) < 0
        || (st_last_packet = slot_offset(type, "last_packet_s")) < 0
        || (st_timeline = slot_offset(type, "timeline")) < 0
        || (st_pending = slot_offset(type, "pending")) < 0)
        return NULL;
    walk_api = api;
    Py_INCREF(type);
    Py_XSETREF(stream_type, type);
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
                return NULL;
            }
        }
        fast_ctx ctx = {stream, sources, now_obj, now_obj ? PyFloat_AS_DOUBLE(now_obj) : 0.0, 0};
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
            return NULL;
        }
        Py_DECREF(item);
    }
    return Py_BuildValue("(lN)", count, out);
}

static PyObject *rtprecv_poll(PyObject *self, PyObject *args)
{
    int epfd, max_events, per_socket;
    (void)self;
    if (!PyArg_ParseTuple(args, "iii", &epfd, &max_events, &per_socket))
        return NULL;
    return poll_sockets(epfd, max_events, per_socket, NULL, NULL, NULL);
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
    return poll_sockets(epfd, max_events, per_socket, streams, sources, now_obj);
}

static PyMethodDef methods[] = {
    {"poll", rtprecv_poll, METH_VARARGS,
     "poll(epfd, max_events, per_socket) -> (count, [(fd, datagrams, sources)]) of the ready sockets"},
    {"poll_walk", rtprecv_poll_walk, METH_VARARGS,
     "poll_walk(epfd, max_events, per_socket, streams, sources, now) -> (count, leftovers)"},
    {"bind_stream", rtprecv_bind_stream, METH_VARARGS,
     "bind_stream(StreamState): find its slots and the compiled timeline walk"},
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
