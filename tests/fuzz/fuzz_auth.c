/* fuzz_auth.c - libFuzzer harness: the authentication handshake's server
 * side (net/auth.c auth_handle) and the keys-file parser.
 *
 * The input is cut into: a keys-file text (length-prefixed), given to
 * auth_keys_parse; then a list of steps on one session, each a byte saying
 * what to send:
 *   0: AUTH_HELLO (maybe with a body)
 *   1: AUTH with a head of raw fuzz bytes
 *   2: AUTH built by the harness with a correct proof for a key of the
 *      table (chosen by the input), fuzz-chosen nonce and claims, and then
 *      maybe one flipped byte of the proof, nonce, name or claims
 *   3: AUTH for a key name not in the table
 * Properties, for every input: the parser either fails with a line number
 * or gives keys of a known role with 16..64 byte secrets; a session reaches
 * AUTH_ST_DONE only through a step 2 whose proof was not damaged, after an
 * AUTH_HELLO and never twice; once it failed it never succeeds; a success
 * answers the key's role and a server proof that checks; every answer packs
 * and unpacks; auth_sess_check never grants a role above the key's. */
#include "base/err.h"
#include "net/auth.h"
#include "proto/imgstore.pb-c.h"
#include "tests/fuzz/fuzz.h"

#define MAX_STEPS 16

static void check_answer(const struct auth_answer *a)
{
    if (a->status != 0 || !a->msg)
        return;
    size_t len = protobuf_c_message_get_packed_size(a->msg);
    uint8_t *buf = malloc(len + 1);
    protobuf_c_message_pack(a->msg, buf);
    ProtobufCMessage *m = protobuf_c_message_unpack(a->msg->descriptor, NULL, len, buf);
    FUZZ_CHECK(m != NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    free(buf);
}

/* Packs m into buf (cap bytes); returns the length. */
static size_t pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    FUZZ_CHECK(len <= cap);
    return protobuf_c_message_pack(m, buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    /* The keys table. */
    size_t tlen = fuzz_u16(&in) % 2048, got = 0;
    const uint8_t *t = fuzz_bytes(&in, tlen, &got);
    char *text = malloc(got + 1);
    memcpy(text, t, got);
    text[got] = '\0'; /* a NUL inside ends the text early, as a C string would */
    struct auth_keys keys = {0};
    char err[AUTH_ERR_MAX] = "";
    int rc = auth_keys_parse(text, fuzz_u8(&in) & 1, &keys.keys, &keys.n, err);
    free(text);
    if (rc != 0) {
        FUZZ_CHECK(rc == IMG_EKEYFILE || rc == -ENOMEM);
        FUZZ_CHECK(err[0] != '\0');
        keys.keys = NULL;
        keys.n = 0;
    }
    for (size_t i = 0; i < keys.n; i++) {
        FUZZ_CHECK(keys.keys[i].role <= AUTH_MEMBER);
        FUZZ_CHECK(keys.keys[i].secret_len >= AUTH_SECRET_MIN &&
                   keys.keys[i].secret_len <= AUTH_SECRET_MAX);
        FUZZ_CHECK(auth_keys_find(&keys, keys.keys[i].name) == &keys.keys[i]);
    }
    int have_keys = (fuzz_u8(&in) & 3) != 0; /* else: authentication off */
    const struct auth_keys *kp = have_keys ? &keys : NULL;
    const char *cluster = (fuzz_u8(&in) & 1) ? "c0ffee" : "";

    struct auth_sess s = {0};
    int failed = 0, done = 0;
    for (int step = 0; step < MAX_STEPS && in.left > 0; step++) {
        unsigned what = fuzz_u8(&in) % 4;
        struct auth_answer a;
        enum auth_state before = s.state;
        uint8_t buf[1024];
        if (what == 0) {
            uint32_t body = fuzz_u8(&in) & 1;
            auth_handle(&s, kp, cluster, "fuzz", FT_AUTH_HELLO, NULL, 0, body, &a);
            FUZZ_CHECK(a.status == 0 ? before == AUTH_ST_NEW && s.state == AUTH_ST_HELLO
                                     : s.state == AUTH_ST_FAILED);
        } else if (what == 1) {
            size_t hl = 0;
            const uint8_t *h = fuzz_bytes(&in, fuzz_u8(&in), &hl);
            auth_handle(&s, kp, cluster, "fuzz", FT_AUTH, h, (uint32_t)hl, 0, &a);
            /* Raw bytes cannot carry a valid HMAC by chance. */
            FUZZ_CHECK(a.status != 0);
        } else {
            const struct auth_key *k = NULL;
            struct auth_key unknown = {.name = "nobody-here", .secret_len = 16};
            if (what == 2 && keys.n)
                k = &keys.keys[fuzz_u8(&in) % keys.n];
            if (!k)
                k = &unknown;
            uint8_t cn[AUTH_NONCE_LEN], proof[AUTH_PROOF_LEN];
            size_t l = 0;
            const uint8_t *c = fuzz_bytes(&in, AUTH_NONCE_LEN, &l);
            memset(cn, 0, sizeof(cn));
            memcpy(cn, c, l);
            char cid[16] = "", sid[16] = "";
            unsigned claims = fuzz_u8(&in);
            if (claims & 1)
                strcpy(cid, (claims & 2) ? "c0ffee" : "beef");
            if (claims & 4)
                snprintf(sid, sizeof(sid), "srv%u", claims >> 4);
            char name[AUTH_NAME_MAX];
            snprintf(name, sizeof(name), "%s", k->name);
            struct auth_claims cl = {cid, sid};
            auth_proof(k, 0, s.server_nonce, cn, name, &cl, proof);
            unsigned damage = fuzz_u8(&in);
            int damaged = (damage & 7) != 0;
            if (damaged) {
                switch (damage & 7) {
                case 1: proof[(damage >> 3) % AUTH_PROOF_LEN] ^= 1; break;
                case 2: cn[(damage >> 3) % AUTH_NONCE_LEN] ^= 0x80; break;
                case 3: name[0] ^= 0x20; break;
                case 4: strcat(cid, "x"); break;
                case 5: strcat(sid, "y"); break;
                default: damaged = 0; break; /* harmless: sent as is */
                }
            }
            Imgstore__Auth m = IMGSTORE__AUTH__INIT;
            m.key_name = name;
            m.client_nonce.data = cn;
            m.client_nonce.len = sizeof(cn);
            m.cluster_id = cid;
            m.server_id = sid;
            m.proof.data = proof;
            m.proof.len = sizeof(proof);
            size_t hl = pack(&m.base, buf, sizeof(buf));
            auth_handle(&s, kp, cluster, "fuzz", FT_AUTH, buf, (uint32_t)hl, 0, &a);
            int may = what == 2 && k != &unknown && !damaged && kp && before == AUTH_ST_HELLO &&
                      !(*cluster && *cid && strcmp(cluster, cid) != 0);
            /* A changed name may name another key of the table: then the
             * proof (of the first key's secret) fails anyway. */
            FUZZ_CHECK((a.status == 0) == may);
            if (a.status == 0) {
                FUZZ_CHECK(s.state == AUTH_ST_DONE && strcmp(s.key_name, k->name) == 0);
                FUZZ_CHECK(strcmp(a.auth.role, auth_role_name(k->role)) == 0);
                FUZZ_CHECK(auth_proof_check(k, 1, s.server_nonce, cn, k->name, &cl,
                                            a.auth.server_proof.data,
                                            a.auth.server_proof.len) == 0);
                /* The client's proof is never accepted as the server's. */
                FUZZ_CHECK(auth_proof_check(k, 1, s.server_nonce, cn, k->name, &cl, proof,
                                            sizeof(proof)) != 0);
            }
        }
        check_answer(&a);
        if (a.status == 0 && s.state == AUTH_ST_DONE) {
            FUZZ_CHECK(!done && !failed);
            done = 1;
        }
        if (s.state == AUTH_ST_FAILED)
            failed = 1;
        FUZZ_CHECK(!(failed && s.state != AUTH_ST_FAILED));
        /* What the session may do matches its key's role. */
        enum auth_role r = auth_sess_role(&s, kp);
        if (!kp)
            FUZZ_CHECK(r == AUTH_MEMBER);
        else if (s.state != AUTH_ST_DONE)
            FUZZ_CHECK(r == AUTH_NONE && auth_sess_check(&s, kp, AUTH_WRITER) == IMG_EAUTH);
        else
            FUZZ_CHECK(r == auth_keys_find(kp, s.key_name)->role);
        FUZZ_CHECK(auth_sess_check(&s, kp, AUTH_NONE) == 0);
    }
    free(keys.keys);
    return 0;
}
