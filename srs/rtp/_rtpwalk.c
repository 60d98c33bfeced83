/* The common case of TrackTimeline.receive_into, compiled (docs/architecture.md, "Hot path").
 *
 * bind(TrackTimeline, ReorderBuffer, JitterEstimator, Placed, seen_mask) finds where the
 * slots of those classes live in their instances; walk(timeline, datagrams, start, now, out)
 * then places datagrams[start:] one after the other for as long as each is the common case
 * -- a plain header (version 2, no padding, extension or CSRC), the current SSRC, the next
 * sequence number with nothing held, a placeable audio payload type of the anchored clock
 * rate, the timestamp moving forward within the resync threshold -- and returns the index of
 * the first datagram that is not (the caller gives that one to the Python path, which
 * handles everything).  It reads and writes the very slots the Python fast path in
 * srs/rtp/track.py reads and writes, with the same integer and double arithmetic, so the
 * placements, counters and jitter are exactly those of the Python path; it never changes
 * anything for a datagram it leaves.
 *
 * The capsule _C_API holds walk_one() for the compiled receiver (srs/server/_rtprecv.c),
 * which places a datagram straight from its receive buffer.
 *
 * Without this module (no compiler at install time) the Python path does it all.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include "_rtpwalk.h"

static PyTypeObject *timeline_type, *buffer_type, *jitter_type, *placed_type;
static PyObject *seen_mask, *one;

static Py_ssize_t tl_origin, tl_rate, tl_event_pts, tl_pt_rates, tl_resync, tl_buffer, tl_ssrc,
    tl_last_arrival, tl_payload_types, tl_ssrc_jitter, tl_received, tl_placeable,
    tl_reanchor, tl_anchor_offset, tl_anchor_ts, tl_last_ts, tl_anchor_rate, tl_finished;
static Py_ssize_t rb_received, rb_held, rb_next, rb_releasing, rb_seen_bits, rb_max_ext,
    rb_unique, rb_candidate;
static Py_ssize_t je_rate, je_packets, je_discontinuities, je_jitter, je_disc_units,
    je_last_transit;
static Py_ssize_t pl_offset, pl_payload_type, pl_payload, pl_ssrc, pl_timestamp, pl_is_event;

typedef struct {
    Py_ssize_t *offset;
    const char *name;
} slot_name;

static int find_slots(PyTypeObject *type, const slot_name *names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if ((*names[i].offset = slot_offset(type, names[i].name)) < 0)
            return -1;
    return 0;
}

static PyObject *rtpwalk_bind(PyObject *self, PyObject *args)
{
    PyTypeObject *types[4];
    PyObject *mask;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!", &PyType_Type, &types[0], &PyType_Type, &types[1],
                          &PyType_Type, &types[2], &PyType_Type, &types[3], &PyLong_Type, &mask))
        return NULL;
    static const slot_name tl[] = {
        {&tl_origin, "origin_s"}, {&tl_rate, "clock_rate_hz"}, {&tl_event_pts, "_event_pts"},
        {&tl_pt_rates, "_pt_rates"}, {&tl_resync, "_resync_samples"}, {&tl_buffer, "_buffer"},
        {&tl_ssrc, "_ssrc"}, {&tl_last_arrival, "_last_arrival_s"},
        {&tl_payload_types, "_payload_types"}, {&tl_ssrc_jitter, "_ssrc_jitter"},
        {&tl_received, "_received"}, {&tl_placeable, "_placeable"},
        {&tl_reanchor, "_reanchor_reason"}, {&tl_anchor_offset, "_anchor_offset"},
        {&tl_anchor_ts, "_anchor_ts"}, {&tl_last_ts, "_last_ts"},
        {&tl_anchor_rate, "_anchor_rate_hz"}, {&tl_finished, "_finished"},
    };
    static const slot_name rb[] = {
        {&rb_received, "received"}, {&rb_held, "_held"}, {&rb_next, "_next"},
        {&rb_releasing, "_releasing"}, {&rb_seen_bits, "_seen_bits"}, {&rb_max_ext, "_max_ext"},
        {&rb_unique, "_unique"}, {&rb_candidate, "_candidate"},
    };
    static const slot_name je[] = {
        {&je_rate, "clock_rate_hz"}, {&je_packets, "packets"},
        {&je_discontinuities, "discontinuities"}, {&je_jitter, "jitter_ts_units"},
        {&je_disc_units, "_discontinuity_ts_units"}, {&je_last_transit, "_last_transit"},
    };
    static const slot_name pl[] = {
        {&pl_offset, "offset_samples"}, {&pl_payload_type, "payload_type"},
        {&pl_payload, "payload"}, {&pl_ssrc, "ssrc"}, {&pl_timestamp, "timestamp"},
        {&pl_is_event, "is_event"},
    };
    if (find_slots(types[0], tl, sizeof tl / sizeof tl[0]) < 0
        || find_slots(types[1], rb, sizeof rb / sizeof rb[0]) < 0
        || find_slots(types[2], je, sizeof je / sizeof je[0]) < 0
        || find_slots(types[3], pl, sizeof pl / sizeof pl[0]) < 0)
        return NULL;
    for (int i = 0; i < 4; i++)
        Py_INCREF(types[i]);
    Py_XSETREF(timeline_type, types[0]);
    Py_XSETREF(buffer_type, types[1]);
    Py_XSETREF(jitter_type, types[2]);
    Py_XSETREF(placed_type, types[3]);
    Py_INCREF(mask);
    Py_XSETREF(seen_mask, mask);
    Py_RETURN_NONE;
}

/* Every int the walk reads is within this bound, so that a counter + 1 and the products of
 * check() stay far from int64 overflow; anything beyond is for the Python path. */
#define INT_BOUND (INT64_C(1) << 62)

/* An int slot as int64; 0 when it is not an exact int within INT_BOUND (the caller leaves
 * the packet).  Exact: an int subclass may carry a finalizer, and the walk runs no Python
 * code between its reads and its writes. */
static int get_i64(PyObject *value, int64_t *out)
{
    int overflow;
    if (value == NULL || !PyLong_CheckExact(value))
        return 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (v >= INT_BOUND || v <= -INT_BOUND)
        return 0;
    *out = v;
    return 1;
}

static int get_double(PyObject *value, double *out)
{
    if (value != NULL && PyFloat_CheckExact(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 1;
    }
    int64_t v;
    if (value != NULL && PyLong_CheckExact(value) && get_i64(value, &v)
        && v > -(INT64_C(1) << 53) && v < (INT64_C(1) << 53)) {
        *out = (double)v;
        return 1;
    }
    return 0;
}

/* The values a commit replaced: released only once every slot is written, since releasing
 * one may run any Python code (a finalizer), which must see the packet placed in full. */
typedef struct {
    PyObject *items[16];
    int count;
} replaced;

static void set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value, replaced *old)
{
    old->items[old->count++] = SLOT(obj, offset);
    SLOT(obj, offset) = value; /* takes the reference */
}

/* Python's floor division for b > 0. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* Everything the Python fast path checks and computes, without changing anything. */
typedef struct {
    PyObject *buffer, *jitter;
    int64_t ext, predicted, next_ext, received, unique, buffer_received, jitter_packets;
    uint32_t timestamp;
    int payload_type;
} plan;

static int check(PyObject *tl, const unsigned char *data, Py_ssize_t size, double now, plan *p)
{
    if (size < 12 || data[0] != 0x80 || SLOT(tl, tl_reanchor) != Py_None)
        return 0;
    int second = data[1];
    int payload_type = second & 0x7F;
    if (second >= 192 && second <= 223)  /* RTCP (RFC 5761 §4) */
        return 0;
    PyObject *pt = PyLong_FromLong(payload_type);  /* a cached small int */
    PyObject *event_pts = SLOT(tl, tl_event_pts);
    PyObject *placeable = SLOT(tl, tl_placeable);
    if (event_pts == NULL || !PyFrozenSet_CheckExact(event_pts) || placeable == NULL
        || (placeable != Py_None && !PyFrozenSet_CheckExact(placeable))) {
        Py_DECREF(pt);
        return 0;
    }
    int is_event = PySet_Contains(event_pts, pt);
    int placed_ok = placeable == Py_None ? 1 : PySet_Contains(placeable, pt);
    if (is_event != 0 || placed_ok != 1 || SLOT(tl, tl_finished) != Py_False) {
        Py_DECREF(pt);
        PyErr_Clear();
        return 0;
    }
    uint32_t sequence_number = ((uint32_t)data[2] << 8) | data[3];
    uint32_t timestamp = ((uint32_t)data[4] << 24) | ((uint32_t)data[5] << 16)
                         | ((uint32_t)data[6] << 8) | data[7];
    uint32_t ssrc = ((uint32_t)data[8] << 24) | ((uint32_t)data[9] << 16)
                    | ((uint32_t)data[10] << 8) | data[11];
    int64_t current_ssrc, rate, packet_rate, anchor_rate, last_ts, anchor_ts, anchor_offset;
    if (!get_i64(SLOT(tl, tl_ssrc), &current_ssrc) || current_ssrc != (int64_t)ssrc
        || !get_i64(SLOT(tl, tl_rate), &rate) || rate <= 0) {
        Py_DECREF(pt);
        return 0;
    }
    packet_rate = rate;
    PyObject *pt_rates = SLOT(tl, tl_pt_rates);
    if (pt_rates == NULL || !PyDict_CheckExact(pt_rates)) {
        Py_DECREF(pt);
        return 0;
    }
    if (PyDict_GET_SIZE(pt_rates)) {
        PyObject *found = PyDict_GetItemWithError(pt_rates, pt);
        if (found != NULL && (!get_i64(found, &packet_rate) || packet_rate <= 0)) {
            Py_DECREF(pt);
            return 0;
        }
        if (found == NULL && PyErr_Occurred()) {
            PyErr_Clear();
            Py_DECREF(pt);
            return 0;
        }
    }
    Py_DECREF(pt);
    if (!get_i64(SLOT(tl, tl_anchor_rate), &anchor_rate) || packet_rate != anchor_rate
        || !get_i64(SLOT(tl, tl_last_ts), &last_ts) || !get_i64(SLOT(tl, tl_anchor_ts), &anchor_ts)
        || !get_i64(SLOT(tl, tl_anchor_offset), &anchor_offset))
        return 0;
    /* Far from any real stream: the Python path does these with unbounded ints. */
    const int64_t bound = INT64_C(1) << 40;
    if (last_ts > bound || last_ts < -bound || anchor_ts > bound || anchor_ts < -bound
        || anchor_offset > bound || anchor_offset < -bound || rate > (1 << 22)
        || packet_rate > (1 << 22))
        return 0;
    /* unwrap_timestamp() (RFC 3550 §5.1), as in track.py */
    int64_t ext = last_ts + (((int64_t)timestamp - last_ts + INT64_C(0x80000000)) & INT64_C(0xFFFFFFFF));
    ext -= INT64_C(0x80000000);
    if (ext < last_ts)
        return 0;
    int64_t delta = ext - anchor_ts;
    if (delta > bound || delta < -bound)  /* then delta * rate < 2**62 */
        return 0;
    if (packet_rate != rate)
        delta = floor_div(delta * rate, packet_rate);
    int64_t predicted = anchor_offset + delta;
    double origin, resync;
    if (!get_double(SLOT(tl, tl_origin), &origin) || !get_double(SLOT(tl, tl_resync), &resync))
        return 0;
    double skew = (now - origin) * (double)rate - (double)predicted;
    if (!(-resync <= skew && skew <= resync))
        return 0;
    /* ReorderBuffer.accept_next() */
    PyObject *buffer = SLOT(tl, tl_buffer);
    if (buffer == NULL || !Py_IS_TYPE(buffer, buffer_type))
        return 0;
    int64_t next_ext;
    PyObject *held = SLOT(buffer, rb_held);
    if (!get_i64(SLOT(buffer, rb_next), &next_ext)
        || (((int64_t)sequence_number - next_ext) & 0xFFFF) != 0
        || SLOT(buffer, rb_releasing) != Py_True || held == NULL || !PyDict_CheckExact(held)
        || PyDict_GET_SIZE(held) != 0 || SLOT(buffer, rb_candidate) != Py_None
        || !get_i64(SLOT(buffer, rb_received), &p->buffer_received)
        || !get_i64(SLOT(buffer, rb_unique), &p->unique)
        || SLOT(buffer, rb_seen_bits) == NULL || !PyLong_CheckExact(SLOT(buffer, rb_seen_bits)))
        return 0;
    if (!get_i64(SLOT(tl, tl_received), &p->received))
        return 0;
    PyObject *jitter = SLOT(tl, tl_ssrc_jitter);
    if (jitter == NULL || (jitter != Py_None && !Py_IS_TYPE(jitter, jitter_type)))
        return 0;
    if (jitter != Py_None && !get_i64(SLOT(jitter, je_packets), &p->jitter_packets))
        return 0;
    PyObject *payload_types = SLOT(tl, tl_payload_types);
    if (payload_types == NULL || !PyDict_CheckExact(payload_types))
        return 0;
    p->buffer = buffer;
    p->jitter = jitter == Py_None ? NULL : jitter;
    p->ext = ext;
    p->predicted = predicted;
    p->next_ext = next_ext;
    p->timestamp = timestamp;
    p->payload_type = payload_type;
    return 1;
}

/* JitterEstimator.update() (RFC 3550 §A.8), the same double arithmetic; 0 to leave. */
static int jitter_ready(PyObject *jitter, double *rate, double *last, int *has_last,
                        double *units, double *value)
{
    int64_t r;
    PyObject *last_transit = SLOT(jitter, je_last_transit);
    if (!get_i64(SLOT(jitter, je_rate), &r) || r <= 0 || r > (1 << 22)
        || !get_double(SLOT(jitter, je_disc_units), units)
        || SLOT(jitter, je_jitter) == NULL || !PyFloat_CheckExact(SLOT(jitter, je_jitter))
        || last_transit == NULL || (last_transit != Py_None && !PyFloat_CheckExact(last_transit)))
        return 0;
    int64_t discontinuities;
    if (!get_i64(SLOT(jitter, je_discontinuities), &discontinuities))
        return 0;
    *rate = (double)r;
    *has_last = last_transit != Py_None;
    *last = *has_last ? PyFloat_AS_DOUBLE(last_transit) : 0.0;
    *value = PyFloat_AS_DOUBLE(SLOT(jitter, je_jitter));
    return 1;
}

static PyObject *new_int(int64_t v) { return PyLong_FromLongLong(v); }

static int walk_one(PyObject *tl, const char *bytes, Py_ssize_t size, PyObject *now_obj,
                    double now, PyObject *out)
{
    const unsigned char *data = (const unsigned char *)bytes;
    plan p;
    if (timeline_type == NULL || !Py_IS_TYPE(tl, timeline_type) || !PyList_CheckExact(out))
        return 0;
    if (!check(tl, data, size, now, &p))
        return 0;
    double j_rate = 0, j_last = 0, j_units = 0, j_value = 0;
    int j_has_last = 0;
    if (p.jitter != NULL && !jitter_ready(p.jitter, &j_rate, &j_last, &j_has_last, &j_units,
                                          &j_value))
        return 0;
    /* Every new object first: nothing changes unless all of them could be made. */
    PyObject *bits = SLOT(p.buffer, rb_seen_bits);
    PyObject *new_bits;
    int all_seen = PyObject_RichCompareBool(bits, seen_mask, Py_EQ);
    if (all_seen < 0)
        return -1;
    if (all_seen) {
        new_bits = Py_NewRef(seen_mask);
    } else {
        PyObject *shifted = PyNumber_Lshift(bits, one);
        PyObject *ored = shifted ? PyNumber_Or(shifted, one) : NULL;
        Py_XDECREF(shifted);
        new_bits = ored ? PyNumber_And(ored, seen_mask) : NULL;
        Py_XDECREF(ored);
        if (new_bits == NULL)
            return -1;
    }
    PyObject *objs[16] = {0};
    int n = 0;
    objs[n++] = new_bits;
    PyObject *received = objs[n++] = new_int(p.buffer_received + 1);
    PyObject *unique = objs[n++] = new_int(p.unique + 1);
    PyObject *max_ext = objs[n++] = new_int(p.next_ext);
    PyObject *next = objs[n++] = new_int(p.next_ext + 1);
    PyObject *tl_count = objs[n++] = new_int(p.received + 1);
    PyObject *last_ts = objs[n++] = new_int(p.ext);
    PyObject *offset = objs[n++] = new_int(p.predicted);
    PyObject *pt = objs[n++] = PyLong_FromLong(p.payload_type);
    PyObject *timestamp = objs[n++] = PyLong_FromUnsignedLong(p.timestamp);
    PyObject *payload = objs[n++] = PyBytes_FromStringAndSize(bytes + 12, size - 12);
    PyObject *j_packets = NULL, *j_transit = NULL, *j_new = NULL, *j_disc = NULL;
    double d = 0;
    int j_sample = 0; /* 0: no sample, 1: jitter moves, 2: a discontinuity */
    if (p.jitter != NULL) {
        double transit = now * j_rate - (double)p.timestamp;
        j_packets = objs[n++] = new_int(p.jitter_packets + 1);
        j_transit = objs[n++] = PyFloat_FromDouble(transit);
        if (j_has_last) {
            d = transit - j_last;
            if (d < 0)
                d = -d;
            j_sample = 1;
            if (d > j_units) {
                d = fabs(d - 4294967296.0);
                if (d > j_units)
                    j_sample = 2;
            }
            if (j_sample == 1) {
                j_new = objs[n++] = PyFloat_FromDouble(j_value + (d - j_value) / 16.0);
            } else {
                int64_t disc;
                get_i64(SLOT(p.jitter, je_discontinuities), &disc);
                j_disc = objs[n++] = new_int(disc + 1);
            }
        }
    }
    PyObject *placed = objs[n++] = placed_type->tp_alloc(placed_type, 0);
    for (int i = 0; i < n; i++) {
        if (objs[i] == NULL) {
            for (int k = 0; k < n; k++)
                Py_XDECREF(objs[k]);
            return -1;
        }
    }
    if (PyList_Append(out, placed) < 0) {
        for (int k = 0; k < n; k++)
            Py_XDECREF(objs[k]);
        return -1;
    }
    /* The commit: exactly the assignments of the Python fast path. */
    replaced old = {{0}, 0};
    set_slot(p.buffer, rb_received, received, &old);
    set_slot(p.buffer, rb_unique, unique, &old);
    set_slot(p.buffer, rb_max_ext, max_ext, &old);
    set_slot(p.buffer, rb_next, next, &old);
    set_slot(p.buffer, rb_seen_bits, new_bits, &old);
    set_slot(tl, tl_received, tl_count, &old);
    set_slot(tl, tl_last_arrival, Py_NewRef(now_obj), &old);
    if (p.jitter != NULL) {
        set_slot(p.jitter, je_packets, j_packets, &old);
        set_slot(p.jitter, je_last_transit, j_transit, &old);
        if (j_new != NULL)
            set_slot(p.jitter, je_jitter, j_new, &old);
        if (j_disc != NULL)
            set_slot(p.jitter, je_discontinuities, j_disc, &old);
    }
    set_slot(tl, tl_last_ts, last_ts, &old);
    SLOT(placed, pl_offset) = offset;
    SLOT(placed, pl_payload_type) = pt;
    SLOT(placed, pl_payload) = payload;
    SLOT(placed, pl_ssrc) = Py_NewRef(SLOT(tl, tl_ssrc));
    SLOT(placed, pl_timestamp) = timestamp;
    SLOT(placed, pl_is_event) = Py_NewRef(Py_False);
    Py_DECREF(placed); /* the list holds it */
    /* Last, as the dict may compare the new key with its others (not srs's small ints). */
    PyObject *payload_types = SLOT(tl, tl_payload_types);
    if (PyDict_GET_SIZE(payload_types) < 128 && PyDict_SetDefault(payload_types, pt, Py_None) == NULL)
        PyErr_Clear(); /* cannot fail for a small int key but for memory; then not listed */
    for (int i = 0; i < old.count; i++)
        Py_XDECREF(old.items[i]);
    return 1;
}

static PyObject *rtpwalk_walk(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5 || !PyList_CheckExact(args[1]) || !PyFloat_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "walk(timeline, datagrams: list, start, now: float, out)");
        return NULL;
    }
    PyObject *timeline = args[0], *datagrams = args[1], *now_obj = args[3], *out = args[4];
    Py_ssize_t i = PyLong_AsSsize_t(args[2]);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "walk(): start must not be negative");
        return NULL;
    }
    double now = PyFloat_AS_DOUBLE(now_obj);
    for (; i < PyList_GET_SIZE(datagrams); i++) {
        PyObject *data = PyList_GET_ITEM(datagrams, i);
        if (!PyBytes_CheckExact(data))
            break;
        int r = walk_one(timeline, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), now_obj,
                         now, out);
        if (r < 0)
            return NULL;
        if (r == 0)
            break;
    }
    return PyLong_FromSsize_t(i);
}

static PyMethodDef methods[] = {
    {"bind", rtpwalk_bind, METH_VARARGS,
     "bind(TrackTimeline, ReorderBuffer, JitterEstimator, Placed, seen_mask): find the slots"},
    {"walk", (PyCFunction)(void (*)(void))rtpwalk_walk, METH_FASTCALL,
     "walk(timeline, datagrams, start, now, out) -> index of the first datagram not placed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtpwalk", "The common case of TrackTimeline.receive_into.", -1,
    methods, NULL, NULL, NULL, NULL,
};

static rtpwalk_api api = {walk_one};

PyMODINIT_FUNC PyInit__rtpwalk(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    one = PyLong_FromLong(1);
    PyObject *capsule = PyCapsule_New(&api, RTPWALK_CAPSULE, NULL);
    if (one == NULL || capsule == NULL || PyModule_AddObject(m, "_C_API", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
