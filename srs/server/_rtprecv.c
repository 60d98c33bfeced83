/* Batched receive for the RTP sockets of one process (docs/architecture.md, "Hot path").
 *
 * poll(epfd, max_events, per_socket) waits for nothing (timeout 0): it takes the ready
 * sockets of an epoll set and drains each with recvmmsg(2), at most per_socket datagrams,
 * returning [(fd, [datagram, ...], [source, ...]), ...].  recv(fd, limit) does the same
 * for one socket.  A source is the sender's address as bytes: 4 address + 2 port octets
 * for IPv4, 16 + 2 for IPv6, both in network order; consecutive datagrams from one sender
 * share one object, so the caller can map it to a host and port with one dict lookup.
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

#define BATCH 32                 /* datagrams per recvmmsg call */
#define SLOT_BYTES 65536         /* a whole UDP datagram always fits: nothing is truncated */
#define MAX_EVENTS 1024

static char slots[BATCH][SLOT_BYTES];
static struct sockaddr_storage names[BATCH];
static struct mmsghdr headers[BATCH];
static struct iovec vectors[BATCH];
static struct epoll_event events[MAX_EVENTS];

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
static int read_socket(int fd, int limit, PyObject *datagrams, PyObject *sources)
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
            PyObject *data = PyBytes_FromStringAndSize(slots[i], headers[i].msg_len);
            if (data == NULL || PyList_Append(datagrams, data) < 0) {
                Py_XDECREF(data);
                Py_XDECREF(last_key);
                return -1;
            }
            Py_DECREF(data);
            if (last_key == NULL || !same_source(&last, &names[i])) {
                Py_XDECREF(last_key);
                last_key = source_key(&names[i]);
                if (last_key == NULL)
                    return -1;
                last = names[i];
            }
            if (PyList_Append(sources, last_key) < 0) {
                Py_DECREF(last_key);
                return -1;
            }
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
    if (datagrams == NULL || sources == NULL || read_socket(fd, limit, datagrams, sources) < 0) {
        Py_XDECREF(datagrams);
        Py_XDECREF(sources);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, datagrams, sources);
    Py_DECREF(datagrams);
    Py_DECREF(sources);
    return out;
}

static PyObject *rtprecv_poll(PyObject *self, PyObject *args)
{
    int epfd, max_events, per_socket;
    (void)self;
    if (!PyArg_ParseTuple(args, "iii", &epfd, &max_events, &per_socket))
        return NULL;
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
    for (int i = 0; i < n; i++) {
        PyObject *datagrams = PyList_New(0);
        PyObject *sources = PyList_New(0);
        PyObject *item = NULL;
        if (datagrams != NULL && sources != NULL
            && read_socket(events[i].data.fd, per_socket, datagrams, sources) >= 0)
            item = Py_BuildValue("(iOO)", events[i].data.fd, datagrams, sources);
        Py_XDECREF(datagrams);
        Py_XDECREF(sources);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"poll", rtprecv_poll, METH_VARARGS,
     "poll(epfd, max_events, per_socket) -> [(fd, datagrams, sources)] of the ready sockets"},
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
