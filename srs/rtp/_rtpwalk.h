/* The C interface of srs/rtp/_rtpwalk.c, for the compiled receiver (srs/server/_rtprecv.c). */
#ifndef SRS_RTPWALK_H
#define SRS_RTPWALK_H

#define RTPWALK_CAPSULE "srs.rtp._rtpwalk._C_API"

typedef struct {
    /* Place one datagram of `timeline` arrived at `now` (the same value as a float object
     * and as a double) onto the list `out` if it is the common case: 1 placed, 0 left
     * untouched for the Python path, -1 a Python error. */
    int (*walk_one)(PyObject *timeline, const char *data, Py_ssize_t size, PyObject *now_obj,
                    double now, PyObject *out);
} rtpwalk_api;

#endif
