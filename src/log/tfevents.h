/* TensorBoard event files, written without a protobuf library.
 *
 * A file is a sequence of TFRecords:
 *   uint64 length, uint32 masked_crc32c(length), bytes[length], uint32 masked_crc32c(bytes)
 * all little-endian, where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 and
 * crc32c is CRC-32 with the Castagnoli polynomial (reflected 0x82f63b78). Each
 * record holds one serialised tensorboard.Event; the first one only carries
 * file_version "brain.Event:2". The fields used (tensorboard/compat/proto):
 *   Event     wall_time 1 (double), step 2 (int64), file_version 3 (string), summary 5
 *   Summary   value 1 (repeated Value)
 *   Value     tag 1 (string), simple_value 2 (float), metadata 9, tensor 8
 *   SummaryMetadata  plugin_data 1 (PluginData: plugin_name 1), data_class 4
 *   TensorProto      dtype 1 (DT_STRING = 7), tensor_shape 2 (dim 2: size 1), string_val 8
 * A message is built into a fixed buffer; one that would not fit sets
 * `overflow` and is not written, rather than written cut. */
#ifndef CUTRAIN_SRC_LOG_TFEVENTS_H
#define CUTRAIN_SRC_LOG_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

uint32_t ct_crc32c(const void *data, size_t n);
uint32_t ct_tfrecord_masked_crc(const void *data, size_t n);

typedef struct ct_pb {
    unsigned char buf[8192];
    size_t len;
    int overflow;
} ct_pb;

/* Empties m (without clearing its buffer: a step builds many). */
void ct_pb_reset(ct_pb *m);
void ct_pb_varint_field(ct_pb *m, unsigned field, uint64_t v);
void ct_pb_double_field(ct_pb *m, unsigned field, double v);
void ct_pb_float_field(ct_pb *m, unsigned field, float v);
void ct_pb_bytes_field(ct_pb *m, unsigned field, const void *data, size_t n);
void ct_pb_string_field(ct_pb *m, unsigned field, const char *s);
/* A nested message: `inner` serialised as a length-delimited field. */
void ct_pb_message_field(ct_pb *m, unsigned field, const ct_pb *inner);

/* Summary.Value entries, appended to a Summary message. */
void ct_tb_scalar_value(ct_pb *summary, const char *tag, float v);
void ct_tb_text_value(ct_pb *summary, const char *tag, const char *text);
/* An Event: wall time, step, and a Summary (NULL: the file_version event). */
void ct_tb_event(ct_pb *event, double wall_time, uint64_t step, const ct_pb *summary);

/* One TFRecord holding `m`; -1 when m overflowed or the write failed. */
int ct_tfrecord_write(FILE *f, const ct_pb *m);

#endif
