/* The C interface of srs/rtp/_rtpwalk.c, for the compiled receiver (srs/server/_rtprecv.c). */
#ifndef SRS_RTPWALK_H
#define SRS_RTPWALK_H

#ifndef Py_T_OBJECT_EX
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif

#define RTPWALK_CAPSULE "srs.rtp._rtpwalk._C_API"

/* The object slot at byte `off` of an instance (offsets from slot_offset). */
#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* Where the __slots__ member `name` of `type` lives in its instances, or -1 with an
 * exception set: the compiled paths read and write the slots of srs's own Python classes
 * directly, and refuse any class whose layout is not that. */
static inline Py_ssize_t slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name);
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)
        || ((PyMemberDescrObject *)descr)->d_member->type != Py_T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, name);
        return -1;
    }
    return ((PyMemberDescrObject *)descr)->d_member->offset;
}

typedef struct {
    /* Place one datagram of `timeline` arrived at `now` (the same value as a float object
     * and as a double) onto the list `out` if it is the common case: 1 placed, 0 left
     * untouched for the Python path, -1 a Python error. */
    int (*walk_one)(PyObject *timeline, const char *data, Py_ssize_t size, PyObject *now_obj,
                    double now, PyObject *out);
} rtpwalk_api;

#endif
