/* The client's per-record work in C (myqueue/core/speedups.py loads it; setup.py builds it where a
 * compiler is). Every function here has a Python path it speeds up, which runs where the module
 * was not built and which tests/unit/test_speedups.py compares it with:
 *
 *   encode   record batch v2 (docs/record-format.md) framed in one pass: the common case of
 *            framing.encode_batch_v2 and of Producer.send_batch's checks
 *   records  a fetch's Record tuples made in one loop (client/records.py, instead of zip and map)
 *   cut      a fetch's values or keys cut out of its bytes (framing._cut, framing._keys)
 *   columns  a fetch's header values by name (framing._header_columns)
 *
 * Why C: CPython's per-object work is the cost, and no library frames or reads this layout. A
 * keyed batch of 1,000 records with two headers took 609 us of client CPU to check and frame in
 * Python against 108 us here; a keyless fetch of 1,000 records 266 us to decode, make and read
 * against 156 (python -m bench.speedups).
 *
 * encode's contract is narrow on purpose: it frames only records of the usual shapes and within
 * the limits it is given, and returns None for anything else (another type, a name that is not
 * valid UTF-8, a key over the limit, ...). The caller then takes the Python path, which frames the
 * unusual shapes and words every refusal: the errors are written once, in Python.
 * The CRC-32C is computed by the callable passed in (google_crc32c.value), over the new batch's
 * bytes 16 .. end, before the batch is returned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HEADER_SIZE 60
#define CRC_START 16
#define NO_APPEND_TIME (-1LL)

static inline void put_u16(char *p, uint16_t v) {
    p[0] = (char)(v & 0xff);
    p[1] = (char)(v >> 8);
}

static inline void put_u32(char *p, uint32_t v) {
    p[0] = (char)(v & 0xff);
    p[1] = (char)((v >> 8) & 0xff);
    p[2] = (char)((v >> 16) & 0xff);
    p[3] = (char)(v >> 24);
}

static inline void put_i64(char *p, int64_t s) {
    uint64_t v = (uint64_t)s;
    for (int i = 0; i < 8; i++) {
        p[i] = (char)((v >> (8 * i)) & 0xff);
    }
}

/* A header name's bytes: an application's exact str as UTF-8, else an exact bytes object's. */
static const char *name_of(PyObject *name, int application, Py_ssize_t *size);

/* bytes -> its buffer; with text, str -> its UTF-8 (cached on the str by CPython); else NULL with no
 * error set. */
static const char *raw_of(PyObject *item, int text, Py_ssize_t *size) {
    if (PyBytes_CheckExact(item)) {
        *size = PyBytes_GET_SIZE(item);
        return PyBytes_AS_STRING(item);
    }
    if (text && PyUnicode_CheckExact(item)) {
        const char *raw = PyUnicode_AsUTF8AndSize(item, size);
        if (raw == NULL) {
            PyErr_Clear(); /* a lone surrogate: not UTF-8, the Python path refuses it */
        }
        return raw;
    }
    return NULL;
}

static const char *name_of(PyObject *name, int application, Py_ssize_t *size) {
    if (application ? !PyUnicode_CheckExact(name) : !PyBytes_CheckExact(name)) {
        return NULL;
    }
    return raw_of(name, application, size);
}

/* A region's running length: None (the Python path) as soon as it passes what its u32 field holds,
 * so no sum can wrap, on 32-bit builds included. */
#define ADD_OR_LEAVE(sum, n)                       \
    do {                                           \
        (sum) += (uint64_t)(n);                    \
        if ((sum) > UINT32_MAX) {                  \
            Py_RETURN_NONE;                        \
        }                                          \
    } while (0)

/* A record's headers as a sequence of pairs (list or tuple), or NULL for none (None or empty). */
static int headers_of(PyObject *entry, PyObject ***items, Py_ssize_t *n) {
    if (entry == Py_None) {
        *n = 0;
        return 1;
    }
    if (!PyList_CheckExact(entry) && !PyTuple_CheckExact(entry)) {
        return 0;
    }
    *items = PySequence_Fast_ITEMS(entry);
    *n = PySequence_Fast_GET_SIZE(entry);
    return 1;
}

/* A header pair's two items, for an exact list or tuple of length 2. */
static int pair_of(PyObject *pair, PyObject **name, PyObject **value) {
    if ((!PyTuple_CheckExact(pair) && !PyList_CheckExact(pair)) || PySequence_Fast_GET_SIZE(pair) != 2) {
        return 0;
    }
    PyObject **two = PySequence_Fast_ITEMS(pair);
    *name = two[0];
    *value = two[1];
    return 1;
}

static PyObject *encode(PyObject *module, PyObject *args) {
    PyObject *values, *timestamps, *keys, *headers, *attributes_arg, *crc;
    int application;
    Py_ssize_t max_value, max_key, max_headers, max_name;
    if (!PyArg_ParseTuple(args, "O!O!OOOpnnnnO:encode", &PyList_Type, &values, &PyList_Type, &timestamps,
                          &keys, &headers, &attributes_arg, &application, &max_value, &max_key, &max_headers,
                          &max_name, &crc)) {
        return NULL;
    }
    if (!PyList_CheckExact(values) || !PyList_CheckExact(timestamps) || !PyLong_CheckExact(attributes_arg)) {
        Py_RETURN_NONE;
    }
    unsigned long long attributes = PyLong_AsUnsignedLongLong(attributes_arg);
    if (attributes == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* negative or past 64 bits: the Python path refuses it */
        Py_RETURN_NONE;
    }
    if (attributes > UINT32_MAX) {
        Py_RETURN_NONE;
    }
    Py_ssize_t count = PyList_GET_SIZE(values);
    if (count == 0 || count > UINT32_MAX || PyList_GET_SIZE(timestamps) != count) {
        Py_RETURN_NONE;
    }
    /* keys and headers: None, or a list or tuple with one entry per record */
    PyObject **key_items = NULL, **header_items = NULL;
    if (keys != Py_None) {
        if ((!PyList_CheckExact(keys) && !PyTuple_CheckExact(keys)) || PySequence_Fast_GET_SIZE(keys) != count) {
            Py_RETURN_NONE;
        }
        key_items = PySequence_Fast_ITEMS(keys);
    }
    if (headers != Py_None) {
        if ((!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers)) ||
            PySequence_Fast_GET_SIZE(headers) != count) {
            Py_RETURN_NONE;
        }
        header_items = PySequence_Fast_ITEMS(headers);
    }

    /* Pass 1: check every item's shape and limits, add up the regions. */
    uint64_t keys_len = 0, names_len = 0, hvalues_len = 0, values_len = 0, header_total = 0;
    int64_t max_ts = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        if (!PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) > max_value) {
            Py_RETURN_NONE;
        }
        ADD_OR_LEAVE(values_len, PyBytes_GET_SIZE(value));
        PyObject *stamp = PyList_GET_ITEM(timestamps, i);
        if (!PyLong_CheckExact(stamp)) {
            Py_RETURN_NONE;
        }
        long long ts = PyLong_AsLongLong(stamp);
        if (ts == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if (i == 0 || ts > max_ts) {
            max_ts = ts;
        }
        if (key_items != NULL) {
            PyObject *key = key_items[i];
            if (key != Py_None) {
                Py_ssize_t size;
                if (raw_of(key, application, &size) == NULL || size > max_key || size >= UINT32_MAX) {
                    Py_RETURN_NONE;
                }
                ADD_OR_LEAVE(keys_len, size);
            }
        }
        if (header_items != NULL) {
            PyObject **pairs = NULL;
            Py_ssize_t n;
            if (!headers_of(header_items[i], &pairs, &n) || n > max_headers || n > UINT16_MAX) {
                Py_RETURN_NONE;
            }
            for (Py_ssize_t j = 0; j < n; j++) {
                PyObject *name, *hvalue;
                Py_ssize_t size;
                if (!pair_of(pairs[j], &name, &hvalue) || name_of(name, application, &size) == NULL ||
                    size > max_name || size > UINT16_MAX || !PyBytes_CheckExact(hvalue) ||
                    PyBytes_GET_SIZE(hvalue) > max_value) {
                    Py_RETURN_NONE;
                }
                ADD_OR_LEAVE(names_len, size);
                ADD_OR_LEAVE(hvalues_len, PyBytes_GET_SIZE(hvalue));
            }
            ADD_OR_LEAVE(header_total, n);
        }
    }
    /* each term is at most 2^32 (times 18): the sum cannot wrap in 64 bits */
    uint64_t tables = 18 * (uint64_t)count + 6 * header_total;
    uint64_t total = HEADER_SIZE + tables + keys_len + names_len + hvalues_len + values_len;
    if (total > PY_SSIZE_T_MAX) {
        Py_RETURN_NONE;
    }
    /* The batch's bytes from CRC_START on are written first, into a bytes object of their own:
     * google_crc32c.value reads only bytes-like objects without a release hook (not a
     * memoryview), so the CRC is taken over that object, and the batch is its 16-byte head plus
     * a copy of it (one memcpy, ~10 us for a 170 KB batch). */
    PyObject *tail = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(total - CRC_START));
    if (tail == NULL) {
        return NULL;
    }

    /* Pass 2: write the header, the tables and the regions (the objects checked above). */
    char *out = PyBytes_AS_STRING(tail); /* the batch's byte 16 (CRC_START) */
    put_u32(out + 16 - CRC_START, (uint32_t)attributes);
    put_u32(out + 20 - CRC_START, (uint32_t)count);
    put_i64(out + 24 - CRC_START, PyLong_AsLongLong(PyList_GET_ITEM(timestamps, 0)));
    put_i64(out + 32 - CRC_START, max_ts);
    put_u32(out + 40 - CRC_START, (uint32_t)header_total);
    put_u32(out + 44 - CRC_START, (uint32_t)keys_len);
    put_u32(out + 48 - CRC_START, (uint32_t)names_len);
    put_u32(out + 52 - CRC_START, (uint32_t)hvalues_len);
    put_u32(out + 56 - CRC_START, (uint32_t)values_len);
    char *ts_table = out + HEADER_SIZE - CRC_START;
    char *key_sizes = ts_table + 8 * count;
    char *header_counts = key_sizes + 4 * count;
    char *value_sizes = header_counts + 2 * count;
    char *name_sizes = value_sizes + 4 * count;
    char *hvalue_sizes = name_sizes + 2 * header_total;
    char *key_data = hvalue_sizes + 4 * header_total;
    char *name_data = key_data + keys_len;
    char *hvalue_data = name_data + names_len;
    char *value_data = hvalue_data + hvalues_len;
    for (Py_ssize_t i = 0; i < count; i++) {
        put_i64(ts_table + 8 * i, PyLong_AsLongLong(PyList_GET_ITEM(timestamps, i)));
        PyObject *value = PyList_GET_ITEM(values, i);
        Py_ssize_t size = PyBytes_GET_SIZE(value);
        put_u32(value_sizes + 4 * i, (uint32_t)size);
        memcpy(value_data, PyBytes_AS_STRING(value), (size_t)size);
        value_data += size;
        uint32_t key_size = 0;
        if (key_items != NULL && key_items[i] != Py_None) {
            const char *raw = raw_of(key_items[i], application, &size);
            memcpy(key_data, raw, (size_t)size);
            key_data += size;
            key_size = (uint32_t)size + 1; /* 0 is "no key": a key of n bytes is n + 1 */
        }
        put_u32(key_sizes + 4 * i, key_size);
        Py_ssize_t n = 0;
        if (header_items != NULL) {
            PyObject **pairs = NULL;
            headers_of(header_items[i], &pairs, &n);
            for (Py_ssize_t j = 0; j < n; j++) {
                PyObject *name, *hvalue;
                pair_of(pairs[j], &name, &hvalue);
                const char *raw = raw_of(name, application, &size);
                put_u16(name_sizes, (uint16_t)size);
                name_sizes += 2;
                memcpy(name_data, raw, (size_t)size);
                name_data += size;
                size = PyBytes_GET_SIZE(hvalue);
                put_u32(hvalue_sizes, (uint32_t)size);
                hvalue_sizes += 4;
                memcpy(hvalue_data, PyBytes_AS_STRING(hvalue), (size_t)size);
                hvalue_data += size;
            }
        }
        put_u16(header_counts + 2 * i, (uint16_t)n);
    }

    PyObject *checksum = PyObject_CallOneArg(crc, tail);
    if (checksum == NULL) {
        Py_DECREF(tail);
        return NULL;
    }
    unsigned long value = PyLong_AsUnsignedLong(checksum);
    Py_DECREF(checksum);
    if (value == (unsigned long)-1 && PyErr_Occurred()) {
        Py_DECREF(tail);
        return NULL;
    }
    PyObject *batch = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (batch == NULL) {
        Py_DECREF(tail);
        return NULL;
    }
    char *head = PyBytes_AS_STRING(batch);
    memcpy(head, "MQB2", 4);
    put_u32(head + 4, (uint32_t)value);
    put_i64(head + 8, NO_APPEND_TIME);
    memcpy(head + CRC_START, PyBytes_AS_STRING(tail), total - CRC_START);
    Py_DECREF(tail);
    return batch;
}

static void release_slots(PyObject **slots, Py_ssize_t width) {
    if (slots == NULL) {
        return;
    }
    for (Py_ssize_t j = 0; j < 2 * width; j++) {
        Py_XDECREF(slots[j]);
    }
    PyMem_Free(slots);
}

/* The deallocator of a tuple subclass defined in Python (found at import): the only kind of class
 * records() makes instances of. A C tuple subclass (a struct sequence: more slots than eight, read
 * by its own getters) would be built wrong, so it is refused. */
static destructor python_tuple_subclass_dealloc = NULL;

/* The item at ``i`` of list ``list`` as a new reference, or NULL with IndexError when the list has
 * shrunk (code run by the collector while records() allocated could have changed it). */
static PyObject *item_at(PyObject *list, Py_ssize_t i) {
    if (i >= PyList_GET_SIZE(list)) {
        PyErr_SetString(PyExc_IndexError, "records: a column changed while its records were made");
        return NULL;
    }
    return Py_NewRef(PyList_GET_ITEM(list, i));
}

/* records(cls, topic, partition, first_offset, start, stop, values, keys, header_lists,
 *         header_names, header_columns, stamps, kind) -> list
 *
 * Records start .. stop of one fetched batch's columns (framing.Columns), each a ``cls`` tuple
 * of (topic, partition, offset, value, key, headers, timestamp_ms, timestamp_type), made in one
 * C loop: itertools' zip and map made two tuples per record and an iterator step per field.
 * keys: a list or None (no key). Headers: header_lists, a list of each record's tuple; or
 * header_names (a tuple of str) with header_columns (a tuple, per name, of a list of values, or
 * one bytes value every record has); or all None (no headers). stamps: a list, or one object
 * every record has.
 *
 * Any allocation may run the collector, and with it finalizers that could change the lists: every
 * item a record needs is taken (a new reference, its list's length checked again) before the
 * record's objects are allocated. */
static PyObject *records(PyObject *module, PyObject *args) {
    PyObject *cls, *topic, *partition, *values, *keys, *header_lists, *names, *columns, *stamps, *kind;
    long long first;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "O!OOLnnO!OOOOOO:records", &PyType_Type, &cls, &topic, &partition, &first,
                          &start, &stop, &PyList_Type, &values, &keys, &header_lists, &names, &columns,
                          &stamps, &kind)) {
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_base != &PyTuple_Type || type->tp_dealloc != python_tuple_subclass_dealloc) {
        PyErr_SetString(PyExc_TypeError, "records: cls must be a tuple subclass defined in Python");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (start < 0 || stop > n || start > stop) {
        PyErr_SetString(PyExc_IndexError, "records: start .. stop outside the values");
        return NULL;
    }
    if (first < 0 || (stop > start && first > LLONG_MAX - (stop - 1))) { /* the last offset made: first + stop - 1 */
        PyErr_SetString(PyExc_OverflowError, "records: offsets past 2**63 - 1");
        return NULL;
    }
    if ((keys != Py_None && (!PyList_CheckExact(keys) || PyList_GET_SIZE(keys) != n)) ||
        (header_lists != Py_None && (!PyList_CheckExact(header_lists) || PyList_GET_SIZE(header_lists) != n)) ||
        (PyList_CheckExact(stamps) && PyList_GET_SIZE(stamps) != n)) {
        PyErr_SetString(PyExc_ValueError, "records: every column has one entry per value");
        return NULL;
    }
    Py_ssize_t width = 0;
    if (names != Py_None && header_lists != Py_None) {
        PyErr_SetString(PyExc_ValueError, "records: headers as lists or as columns, not both");
        return NULL;
    }
    if (names != Py_None) {
        if (!PyTuple_CheckExact(names) || !PyTuple_CheckExact(columns) ||
            PyTuple_GET_SIZE(names) != PyTuple_GET_SIZE(columns)) {
            PyErr_SetString(PyExc_ValueError, "records: header names and columns do not match");
            return NULL;
        }
        width = PyTuple_GET_SIZE(names);
        for (Py_ssize_t j = 0; j < width; j++) {
            PyObject *column = PyTuple_GET_ITEM(columns, j);
            if (!PyBytes_CheckExact(column) && (!PyList_CheckExact(column) || PyList_GET_SIZE(column) != n)) {
                PyErr_SetString(PyExc_ValueError, "records: a header column has not one value per record");
                return NULL;
            }
        }
    }
    /* per name: [0, width) the (name, value) pair every record shares (a bytes column) or NULL;
     * [width, 2 * width) the record's own value, taken before its pairs are made */
    PyObject **slots = NULL;
    if (width) {
        slots = PyMem_Calloc(2 * (size_t)width, sizeof(PyObject *));
        if (slots == NULL) {
            return PyErr_NoMemory();
        }
        for (Py_ssize_t j = 0; j < width; j++) {
            PyObject *column = PyTuple_GET_ITEM(columns, j);
            if (PyBytes_CheckExact(column) && (slots[j] = PyTuple_Pack(2, PyTuple_GET_ITEM(names, j), column)) == NULL) {
                goto fail_slots;
            }
        }
    }
    PyObject *no_headers = PyTuple_New(0);
    if (no_headers == NULL) {
        goto fail_slots;
    }
    PyObject *out = PyList_New(stop - start);
    if (out == NULL) {
        Py_DECREF(no_headers);
        goto fail_slots;
    }
    for (Py_ssize_t i = start; i < stop; i++) {
        /* 1: every item this record needs, as new references (no allocation here) */
        PyObject *value = item_at(values, i);
        PyObject *key = keys == Py_None ? Py_NewRef(Py_None) : item_at(keys, i);
        PyObject *stamp = PyList_CheckExact(stamps) ? item_at(stamps, i) : Py_NewRef(stamps);
        PyObject *headers = header_lists != Py_None ? item_at(header_lists, i) : NULL;
        int taken = value != NULL && key != NULL && stamp != NULL && (header_lists == Py_None || headers != NULL);
        for (Py_ssize_t j = 0; j < width && taken; j++) {
            if (slots[j] == NULL) {
                slots[width + j] = item_at(PyTuple_GET_ITEM(columns, j), i);
                taken = slots[width + j] != NULL;
            }
        }
        /* 2: the record's own objects; each reference taken above is handed to one of them */
        PyObject *offset = taken ? PyLong_FromLongLong(first + i) : NULL;
        if (offset != NULL && headers == NULL) {
            headers = width ? PyTuple_New(width) : Py_NewRef(no_headers);
            for (Py_ssize_t j = 0; j < width && headers != NULL; j++) {
                PyObject *pair = slots[j] ? Py_NewRef(slots[j]) : PyTuple_New(2);
                if (pair == NULL) {
                    Py_CLEAR(headers);
                    break;
                }
                if (slots[j] == NULL) {
                    PyTuple_SET_ITEM(pair, 0, Py_NewRef(PyTuple_GET_ITEM(names, j)));
                    PyTuple_SET_ITEM(pair, 1, slots[width + j]);
                    slots[width + j] = NULL;
                }
                PyTuple_SET_ITEM(headers, j, pair);
            }
        }
        PyObject *record = offset != NULL && headers != NULL ? type->tp_alloc(type, 8) : NULL;
        if (record == NULL) {
            Py_XDECREF(value);
            Py_XDECREF(key);
            Py_XDECREF(stamp);
            Py_XDECREF(headers);
            Py_XDECREF(offset);
            for (Py_ssize_t j = width; j < 2 * width; j++) {
                Py_CLEAR(slots[j]);
            }
            goto fail;
        }
#if PY_VERSION_HEX >= 0x030E0000
        ((PyTupleObject *)record)->ob_hash = -1; /* 3.14 caches a tuple's hash: "not computed yet" */
#endif
        PyTuple_SET_ITEM(record, 0, Py_NewRef(topic));
        PyTuple_SET_ITEM(record, 1, Py_NewRef(partition));
        PyTuple_SET_ITEM(record, 2, offset);
        PyTuple_SET_ITEM(record, 3, value);
        PyTuple_SET_ITEM(record, 4, key);
        PyTuple_SET_ITEM(record, 5, headers);
        PyTuple_SET_ITEM(record, 6, stamp);
        PyTuple_SET_ITEM(record, 7, Py_NewRef(kind));
        PyList_SET_ITEM(out, i - start, record);
    }
    Py_DECREF(no_headers);
    release_slots(slots, width);
    return out;
fail:
    /* the list's slots not filled yet are NULL: its deallocation skips them */
    Py_DECREF(no_headers);
    Py_DECREF(out);
fail_slots:
    release_slots(slots, width);
    return NULL;
}

/* A table of u32 sizes (an array('I') of framing's, native order) as a read-only buffer. */
static int sizes_of(PyObject *table, Py_buffer *view) {
    if (PyObject_GetBuffer(table, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return 0;
    }
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "I") != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "a size table is an array('I')");
        return 0;
    }
    return 1;
}

/* cut(data, at, sizes, keys) -> list
 *
 * The items laid back to back in ``data`` from ``at``, of the sizes in ``sizes`` (an array('I')),
 * as bytes: framing._cut's job in one C loop. With ``keys``, sizes are a v2 key table: 0 is no key
 * (None, taking no bytes), n + 1 a key of n bytes. ValueError when the items run past ``data``. */
static PyObject *cut(PyObject *module, PyObject *args) {
    Py_buffer data, sizes;
    Py_ssize_t at;
    PyObject *table;
    int keys;
    if (!PyArg_ParseTuple(args, "y*nOp:cut", &data, &at, &table, &keys)) {
        return NULL;
    }
    if (!sizes_of(table, &sizes)) {
        PyBuffer_Release(&data);
        return NULL;
    }
    const uint32_t *size = sizes.buf;
    Py_ssize_t n = sizes.len / 4;
    PyObject *out = at < 0 || at > data.len ? NULL : PyList_New(n);
    if (out == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "cut: start past the data");
    }
    const char *base = data.buf;
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *item;
        if (keys && size[i] == 0) {
            item = Py_NewRef(Py_None);
        } else {
            Py_ssize_t length = (Py_ssize_t)size[i] - (keys ? 1 : 0);
            if (length > data.len - at) {
                PyErr_SetString(PyExc_ValueError, "cut: the items run past the data");
                Py_CLEAR(out);
                break;
            }
            item = PyBytes_FromStringAndSize(base + at, length);
            at += length;
        }
        if (item == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, item);
    }
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&data);
    return out;
}

/* columns(data, at, sizes, each) -> tuple
 *
 * A v2 batch's header values when every record carries ``each`` headers named alike: per name, a
 * list of each record's value, or the one bytes value every record has (found by comparing bytes,
 * before any object is made). ``sizes``: the header value size table (array('I'), one per header,
 * record by record). ValueError when the values run past ``data`` or the table is not ``each``
 * per record. */
static PyObject *columns(PyObject *module, PyObject *args) {
    Py_buffer data, sizes;
    Py_ssize_t at, each;
    PyObject *table;
    if (!PyArg_ParseTuple(args, "y*nOn:columns", &data, &at, &table, &each)) {
        return NULL;
    }
    if (!sizes_of(table, &sizes)) {
        PyBuffer_Release(&data);
        return NULL;
    }
    const uint32_t *size = sizes.buf;
    Py_ssize_t total = sizes.len / 4;
    PyObject *out = NULL;
    Py_ssize_t *starts = NULL;
    if (each <= 0 || total % each != 0 || at < 0 || at > data.len) {
        PyErr_SetString(PyExc_ValueError, "columns: not the same header count on every record");
        goto done;
    }
    Py_ssize_t count = total / each;
    /* where each header value starts: one pass, every length checked against the data */
    starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(total ? total : 1));
    if (starts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0, pos = at; k < total; k++) {
        if ((Py_ssize_t)size[k] > data.len - pos) {
            PyErr_SetString(PyExc_ValueError, "columns: the values run past the data");
            goto done;
        }
        starts[k] = pos;
        pos += size[k];
    }
    out = PyTuple_New(each);
    if (out == NULL) {
        goto done;
    }
    const char *base = data.buf;
    for (Py_ssize_t j = 0; j < each; j++) {
        int same = 1;
        for (Py_ssize_t i = 1; i < count && same; i++) {
            Py_ssize_t k = i * each + j;
            same = size[k] == size[j] && memcmp(base + starts[k], base + starts[j], size[j]) == 0;
        }
        PyObject *column;
        if (same && count > 0) {
            column = PyBytes_FromStringAndSize(base + starts[j], size[j]);
        } else {
            column = PyList_New(count);
            for (Py_ssize_t i = 0; column != NULL && i < count; i++) {
                Py_ssize_t k = i * each + j;
                PyObject *value = PyBytes_FromStringAndSize(base + starts[k], size[k]);
                if (value == NULL) {
                    Py_CLEAR(column);
                    break;
                }
                PyList_SET_ITEM(column, i, value);
            }
        }
        if (column == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyTuple_SET_ITEM(out, j, column);
    }
done:
    PyMem_Free(starts);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&data);
    return out;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS,
     "encode(values, timestamps, keys, headers, attributes, application, max_value, max_key, max_headers,\n"
     "       max_name, crc)\n"
     "A v2 record batch, or None when a record is outside the common case (see the module)."},
    {"records", records, METH_VARARGS,
     "records(cls, topic, partition, first_offset, start, stop, values, keys, header_lists,\n"
     "        header_names, header_columns, stamps, kind)\n"
     "Records start .. stop of one batch's columns, as cls tuples (see the module)."},
    {"cut", cut, METH_VARARGS,
     "cut(data, at, sizes, keys) -> list\nItems of the sizes in an array('I'), cut out of data from at (see the module)."},
    {"columns", columns, METH_VARARGS,
     "columns(data, at, sizes, each) -> tuple\nA v2 batch's header values by name (see the module)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "myqueue.core._speedups", "Record batch v2 framed in C (the common case).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *probe = PyObject_CallFunction((PyObject *)&PyType_Type, "s(O){s:()}", "_probe", &PyTuple_Type,
                                            "__slots__");
    if (probe == NULL) {
        return NULL;
    }
    python_tuple_subclass_dealloc = ((PyTypeObject *)probe)->tp_dealloc;
    Py_DECREF(probe);
    return PyModule_Create(&module);
}
