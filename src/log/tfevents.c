/* The wire format of tfevents.h: CRC-32C, TFRecord framing, and the
 * protobuf encoding of the few messages a scalar or text summary needs. */
#include "src/log/tfevents.h"

#include <pthread.h>
#include <string.h>

static uint32_t crc_table[256];
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void) {
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
        crc_table[i] = c;
    }
}

uint32_t ct_crc32c(const void *data, size_t n) {
    pthread_once(&crc_table_once, crc_table_init);
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; ++i) c = crc_table[(c ^ p[i]) & 0xffu] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

uint32_t ct_tfrecord_masked_crc(const void *data, size_t n) {
    uint32_t c = ct_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

void ct_pb_reset(ct_pb *m) {
    m->len = 0;
    m->overflow = 0;
}

static void put(ct_pb *m, const void *data, size_t n) {
    if (m->overflow || n > sizeof m->buf - m->len) {
        m->overflow = 1;
        return;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
}

static void put_varint(ct_pb *m, uint64_t v) {
    unsigned char b[10];
    size_t n = 0;
    do {
        b[n] = (unsigned char)(v & 0x7fu);
        v >>= 7;
        if (v) b[n] |= 0x80u;
        ++n;
    } while (v);
    put(m, b, n);
}

static void put_le(ct_pb *m, uint64_t v, size_t bytes) {
    unsigned char b[8];
    for (size_t i = 0; i < bytes; ++i) b[i] = (unsigned char)(v >> (8 * i));
    put(m, b, bytes);
}

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

static void put_key(ct_pb *m, unsigned field, unsigned wire) { put_varint(m, ((uint64_t)field << 3) | wire); }

void ct_pb_varint_field(ct_pb *m, unsigned field, uint64_t v) {
    put_key(m, field, WIRE_VARINT);
    put_varint(m, v);
}

void ct_pb_double_field(ct_pb *m, unsigned field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(m, field, WIRE_I64);
    put_le(m, bits, 8);
}

void ct_pb_float_field(ct_pb *m, unsigned field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(m, field, WIRE_I32);
    put_le(m, bits, 4);
}

void ct_pb_bytes_field(ct_pb *m, unsigned field, const void *data, size_t n) {
    put_key(m, field, WIRE_LEN);
    put_varint(m, n);
    put(m, data, n);
}

void ct_pb_string_field(ct_pb *m, unsigned field, const char *s) { ct_pb_bytes_field(m, field, s, strlen(s)); }

void ct_pb_message_field(ct_pb *m, unsigned field, const ct_pb *inner) {
    if (inner->overflow) m->overflow = 1;
    ct_pb_bytes_field(m, field, inner->buf, inner->len);
}

void ct_tb_scalar_value(ct_pb *summary, const char *tag, float v) {
    ct_pb value;
    ct_pb_reset(&value);
    ct_pb_string_field(&value, 1, tag);
    ct_pb_float_field(&value, 2, v);
    ct_pb_message_field(summary, 1, &value);
}

/* The text plugin's form, as PyTorch's SummaryWriter.add_text writes it: a
 * DT_STRING tensor of shape [1], tagged for the plugin "text" (and here
 * also with the tensor data class, which the plugin's data implies). */
void ct_tb_text_value(ct_pb *summary, const char *tag, const char *text) {
    ct_pb plugin, meta, dim, shape, tensor, value;
    ct_pb *all[] = {&plugin, &meta, &dim, &shape, &tensor, &value};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i) ct_pb_reset(all[i]);
    ct_pb_string_field(&plugin, 1, "text");
    ct_pb_message_field(&meta, 1, &plugin);
    ct_pb_varint_field(&meta, 4, 2); /* DATA_CLASS_TENSOR */
    ct_pb_varint_field(&dim, 1, 1);  /* TensorShapeProto.Dim.size */
    ct_pb_message_field(&shape, 2, &dim);
    ct_pb_varint_field(&tensor, 1, 7); /* DT_STRING */
    ct_pb_message_field(&tensor, 2, &shape);
    ct_pb_string_field(&tensor, 8, text);
    ct_pb_string_field(&value, 1, tag);
    ct_pb_message_field(&value, 9, &meta);
    ct_pb_message_field(&value, 8, &tensor);
    ct_pb_message_field(summary, 1, &value);
}

void ct_tb_event(ct_pb *event, double wall_time, uint64_t step, const ct_pb *summary) {
    ct_pb_double_field(event, 1, wall_time);
    if (!summary) {
        ct_pb_string_field(event, 3, "brain.Event:2");
        return;
    }
    ct_pb_varint_field(event, 2, step);
    ct_pb_message_field(event, 5, summary);
}

int ct_tfrecord_write(FILE *f, const ct_pb *m) {
    if (m->overflow) return -1;
    unsigned char head[12];
    uint64_t n = m->len;
    for (int i = 0; i < 8; ++i) head[i] = (unsigned char)(n >> (8 * i));
    uint32_t c = ct_tfrecord_masked_crc(head, 8);
    for (int i = 0; i < 4; ++i) head[8 + i] = (unsigned char)(c >> (8 * i));
    unsigned char tail[4];
    c = ct_tfrecord_masked_crc(m->buf, m->len);
    for (int i = 0; i < 4; ++i) tail[i] = (unsigned char)(c >> (8 * i));
    if (fwrite(head, 1, sizeof head, f) != sizeof head || fwrite(m->buf, 1, m->len, f) != m->len ||
        fwrite(tail, 1, sizeof tail, f) != sizeof tail)
        return -1;
    return 0;
}
