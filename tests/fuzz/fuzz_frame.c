/* fuzz_frame.c - libFuzzer harness: the frame header codec and the protobuf
 * heads of every message type.
 *
 * The first FRAME_HEADER_SIZE bytes go to frame_decode; a header it accepts
 * must encode back to the same bytes. The bytes after the header are the
 * head (cut to head_len when the header is valid), and are unpacked as
 * every message of proto/imgstore.proto, as the servers do for the type they
 * expect: an unpacked message must pack again (see check_message). The
 * list of messages is generated from
 * the protobuf-c header at build time (fuzz_descriptors.h), so new messages
 * are fuzzed without editing this file. */
#include "proto/frame.h"
#include "proto/imgstore.pb-c.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_descriptors.h"

static void check_header(const uint8_t *in)
{
    struct frame_header h;
    if (frame_decode(in, &h) != 0)
        return;
    uint8_t out[FRAME_HEADER_SIZE];
    frame_encode(&h, out);
    FUZZ_CHECK(memcmp(in, out, FRAME_HEADER_SIZE) == 0);
    FUZZ_CHECK(h.head_len <= FRAME_MAX_HEAD && h.body_len <= FRAME_MAX_BODY);
    FUZZ_CHECK(frame_type_name(h.type) != NULL);
}

/* Unpacks `head` as message `d` and, when it parses, packs it again and
 * unpacks the packed form (memory safety of every path the servers and the
 * client use). The packed form is not required to parse: protobuf-c keeps
 * unknown fields and re-emits them as it read them, which need not be
 * valid again; the servers never re-pack a message they received. When it
 * does parse, packing it again must give the same bytes. */
static void check_message(const ProtobufCMessageDescriptor *d, const uint8_t *head, size_t len)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, head);
    if (!m)
        return;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(protobuf_c_message_pack(m, buf) == n);
    protobuf_c_message_free_unpacked(m, NULL);
    ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, n, buf);
    if (m2) {
        size_t n2 = protobuf_c_message_get_packed_size(m2);
        uint8_t *buf2 = malloc(n2 ? n2 : 1);
        FUZZ_CHECK(buf2 != NULL);
        FUZZ_CHECK(protobuf_c_message_pack(m2, buf2) == n2);
        if (n2 != n || memcmp(buf, buf2, n) != 0)
            fprintf(stderr, "message %s: packing is not stable\n", d->name);
        FUZZ_CHECK(n2 == n && memcmp(buf, buf2, n) == 0);
        protobuf_c_message_free_unpacked(m2, NULL);
        free(buf2);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FRAME_HEADER_SIZE)
        return 0;
    check_header(data);
    struct frame_header h;
    size_t len = size - FRAME_HEADER_SIZE;
    if (frame_decode(data, &h) == 0 && h.head_len < len)
        len = h.head_len;
    uint8_t *head = fuzz_exact_copy(data + FRAME_HEADER_SIZE, len);
    for (size_t i = 0; i < sizeof(fuzz_descriptors) / sizeof(fuzz_descriptors[0]); i++)
        check_message(fuzz_descriptors[i], head, len);
    free(head);
    return 0;
}
