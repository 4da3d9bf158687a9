/* Unit tests of net/auth.c: keys files (parsing errors with line numbers,
 * mode and type refusal, reload by stat, revocation), HMAC proofs (verify,
 * fail on any changed byte of any input), the constant-time compare (every
 * proof and bearer check goes through CRYPTO_memcmp, counted here by
 * interposing it), and the server side of the handshake's role checks. */
#include "net/auth.h"

#include "base/err.h"

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Counts calls of CRYPTO_memcmp (this definition comes first in the link;
 * the real one is found with RTLD_NEXT). */
static unsigned memcmp_calls;
int CRYPTO_memcmp(const void *a, const void *b, size_t len)
{
    static int (*real)(const void *, const void *, size_t);
    if (!real)
        real = (int (*)(const void *, const void *, size_t))dlsym(RTLD_NEXT, "CRYPTO_memcmp");
    memcmp_calls++;
    return real(a, b, len);
}

#define S1 "00112233445566778899aabbccddeeff"
#define S2 "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_auth.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Writes text to dir/name with mode; returns the path (static buffer). */
static const char *put(const char *name, const char *text, mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cr_assert_eq(chmod(path, mode), 0);
    return path;
}

static int parse_err(const char *text, char *err)
{
    struct auth_key *k = NULL;
    size_t n = 99;
    int rc = auth_keys_parse(text, 0, &k, &n, err);
    if (rc == 0)
        free(k);
    return rc;
}

Test(auth, parse_good)
{
    struct auth_key *k;
    size_t n;
    char err[AUTH_ERR_MAX] = "";
    const char *text = "# cluster keys\n\nmember ds1 " S1 "\n  operator ops  " S2 "  # admin\r\n"
                       "writer app " S1 "\n";
    cr_assert_eq(auth_keys_parse(text, 0, &k, &n, err), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(k[0].name, "ds1");
    cr_assert_eq(k[0].role, AUTH_MEMBER);
    cr_assert_eq(k[0].secret_len, 16);
    cr_assert_eq(k[0].secret[0], 0x00);
    cr_assert_eq(k[0].secret[15], 0xff);
    cr_assert_eq(k[1].role, AUTH_OPERATOR);
    cr_assert_eq(k[1].secret_len, 32);
    cr_assert_eq(k[2].role, AUTH_WRITER);
    free(k);
}

Test(auth, parse_errors_name_the_line)
{
    char err[AUTH_ERR_MAX];
    cr_assert_eq(parse_err("member a " S1 "\nboss b " S1 "\n", err), IMG_EKEYFILE);
    cr_assert(strstr(err, "line 2") && strstr(err, "unknown role"), "%s", err);
    cr_assert_eq(parse_err("# x\nmember a 0011\n", err), IMG_EKEYFILE);
    cr_assert(strstr(err, "line 2") && strstr(err, "hex digits"), "%s", err);
    cr_assert_eq(parse_err("member a " S1 "0\n", err), IMG_EKEYFILE, "odd length");
    cr_assert_eq(parse_err("member a 0g112233445566778899aabbccddeeff\n", err), IMG_EKEYFILE);
    cr_assert_eq(parse_err("member a\n", err), IMG_EKEYFILE);
    cr_assert(strstr(err, "line 1") && strstr(err, "ROLE NAME SECRET"), "%s", err);
    cr_assert_eq(parse_err("a " S1 "\n", err), IMG_EKEYFILE, "servers want a role");
    cr_assert_eq(parse_err("member a " S1 "\nwriter a " S1 "\n", err), IMG_EKEYFILE);
    cr_assert(strstr(err, "line 2") && strstr(err, "twice"), "%s", err);
    cr_assert_eq(parse_err("member a/b " S1 "\n", err), IMG_EKEYFILE, "bad name");
    cr_assert_eq(parse_err("member a " S1 " extra\n", err), IMG_EKEYFILE);
    char longline[700];
    memset(longline, 'a', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = '\0';
    cr_assert_eq(parse_err(longline, err), IMG_EKEYFILE);
    char longsecret[200] = "member a ";
    memset(longsecret + 9, 'a', 130);
    longsecret[139] = '\0';
    cr_assert_eq(parse_err(longsecret, err), IMG_EKEYFILE, "more than 128 hex digits");
}

Test(auth, client_file, .init = setup, .fini = teardown)
{
    struct auth_key k;
    char err[AUTH_ERR_MAX];
    cr_assert_eq(auth_key_file_load(put("k", "# mine\napp " S1 "\n", 0600), &k, err), 0, "%s",
                 err);
    cr_assert_str_eq(k.name, "app");
    cr_assert_eq(k.role, AUTH_NONE);
    cr_assert_eq(auth_key_file_load(put("k", "operator ops " S2 "\n", 0400), &k, err), 0);
    cr_assert_eq(k.role, AUTH_OPERATOR);
    cr_assert_eq(auth_key_file_load(put("k", "# nothing\n", 0600), &k, err), IMG_EKEYFILE);
    cr_assert_eq(auth_key_file_load(put("k", "app " S1 "\n", 0644), &k, err), IMG_EKEYFILE);
    cr_assert(strstr(err, "0644") && strstr(err, "/k"), "%s", err);
}

Test(auth, mode_and_type_refused, .init = setup, .fini = teardown)
{
    struct auth_keys *ks;
    char err[AUTH_ERR_MAX];
    const mode_t bad[] = {0644, 0640, 0604, 0660, 0606, 0666, 0610};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *p = put("keys", "member a " S1 "\n", bad[i]);
        cr_assert_eq(auth_keys_load(p, &ks, err), IMG_EKEYFILE, "mode %o", bad[i]);
        char m[8];
        snprintf(m, sizeof(m), "%04o", bad[i]);
        cr_assert(strstr(err, m) && strstr(err, p), "%s", err);
    }
    cr_assert_eq(auth_keys_load(dir, &ks, err), IMG_EKEYFILE, "a folder");
    cr_assert(strstr(err, "not a regular file"), "%s", err);
    char link[160];
    snprintf(link, sizeof(link), "%s/link", dir);
    cr_assert_eq(symlink(put("keys", "member a " S1 "\n", 0600), link), 0);
    cr_assert_eq(auth_keys_load(link, &ks, err), IMG_EKEYFILE, "a symbolic link");
    cr_assert_eq(auth_keys_load("/nonexistent/keys", &ks, err), -ENOENT);
    cr_assert_eq(auth_keys_load(put("keys", "member a " S1 "\n", 0600), &ks, err), 0);
    auth_keys_free(ks);
}

Test(auth, reload_adds_and_revokes, .init = setup, .fini = teardown)
{
    struct auth_keys *ks;
    char err[AUTH_ERR_MAX];
    const char *p = put("keys", "member ds " S1 "\noperator ops " S2 "\n", 0600);
    cr_assert_eq(auth_keys_load(p, &ks, err), 0, "%s", err);
    cr_assert_eq(auth_keys_reload(ks, err), 0, "unchanged");
    struct auth_sess s = {.state = AUTH_ST_DONE, .key_gen = auth_keys_find(ks, "ops")->gen};
    strcpy(s.key_name, "ops");
    cr_assert_eq(auth_sess_check(&s, ks, AUTH_OPERATOR), 0);
    cr_assert_eq(auth_sess_check(&s, ks, AUTH_MEMBER), IMG_EPERM);
    /* revoke ops, add app (a longer file: size changes) */
    put("keys", "member ds " S1 "\nwriter app " S2 "\n# ops revoked\n", 0600);
    cr_assert_eq(auth_keys_reload(ks, err), 1, "%s", err);
    cr_assert_null(auth_keys_find(ks, "ops"));
    cr_assert_not_null(auth_keys_find(ks, "app"));
    cr_assert_eq(auth_sess_check(&s, ks, AUTH_WRITER), IMG_EAUTH, "revoked");
    cr_assert_eq(auth_sess_check(&s, ks, AUTH_NONE), 0, "reads stay open");
    /* the same name with a new secret: a session of the old secret is
     * refused; one of an unchanged key (app) survives a reload */
    struct auth_sess sa = {.state = AUTH_ST_DONE, .key_gen = auth_keys_find(ks, "app")->gen};
    strcpy(sa.key_name, "app");
    cr_assert_eq(auth_sess_check(&sa, ks, AUTH_WRITER), 0);
    struct auth_sess sd = {.state = AUTH_ST_DONE, .key_gen = auth_keys_find(ks, "ds")->gen};
    strcpy(sd.key_name, "ds");
    cr_assert_eq(auth_sess_check(&sd, ks, AUTH_MEMBER), 0);
    put("keys", "member ds " S2 "\nwriter app " S2 "\n# ds has a new secret\n", 0600);
    cr_assert_eq(auth_keys_reload(ks, err), 1, "%s", err);
    cr_assert_eq(auth_sess_check(&sd, ks, AUTH_MEMBER), IMG_EAUTH, "an old secret of the name");
    cr_assert_eq(auth_sess_check(&sa, ks, AUTH_WRITER), 0, "unchanged key, same session");
    /* a bad mode on reload: error, the old keys stay */
    cr_assert_eq(chmod(p, 0644), 0);
    put("keys", "member ds " S1 "\n", 0644);
    cr_assert_eq(auth_keys_reload(ks, err), IMG_EKEYFILE);
    cr_assert(strstr(err, "keeping"), "%s", err);
    cr_assert_not_null(auth_keys_find(ks, "app"));
    /* a malformed line on reload: same */
    put("keys", "member ds " S1 "\nwriter\n", 0600);
    cr_assert_eq(auth_keys_reload(ks, err), IMG_EKEYFILE);
    cr_assert(strstr(err, "line 2"), "%s", err);
    cr_assert_not_null(auth_keys_find(ks, "app"));
    auth_keys_free(ks);
}

Test(auth, session_roles)
{
    struct auth_sess s = {0};
    cr_assert_eq(auth_sess_check(&s, NULL, AUTH_MEMBER), 0, "authentication off");
    struct auth_key keys[2] = {{.name = "w", .role = AUTH_WRITER},
                               {.name = "m", .role = AUTH_MEMBER}};
    struct auth_keys ks = {.keys = keys, .n = 2};
    cr_assert_eq(auth_sess_check(&s, &ks, AUTH_WRITER), IMG_EAUTH, "no handshake");
    s.state = AUTH_ST_FAILED;
    strcpy(s.key_name, "m");
    cr_assert_eq(auth_sess_check(&s, &ks, AUTH_WRITER), IMG_EAUTH, "failed handshake");
    s.state = AUTH_ST_DONE;
    cr_assert_eq(auth_sess_check(&s, &ks, AUTH_MEMBER), 0);
    strcpy(s.key_name, "w");
    cr_assert_eq(auth_sess_check(&s, &ks, AUTH_WRITER), 0);
    cr_assert_eq(auth_sess_check(&s, &ks, AUTH_OPERATOR), IMG_EPERM);
}

static void flip_check(const struct auth_key *k, uint8_t *buf, size_t len, const uint8_t *sn,
                       const uint8_t *cn, const char *name, const struct auth_claims *cl,
                       const uint8_t *proof)
{
    for (size_t i = 0; i < len; i++)
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            cr_assert_eq(auth_proof_check(k, 0, sn, cn, name, cl, proof, AUTH_PROOF_LEN),
                         IMG_EAUTH, "byte %zu bit %d", i, bit);
            buf[i] ^= (uint8_t)(1u << bit);
        }
}

Test(auth, proofs)
{
    struct auth_key k = {.name = "ds1", .role = AUTH_MEMBER, .secret_len = 16};
    for (int i = 0; i < 16; i++)
        k.secret[i] = (uint8_t)(i * 7 + 1);
    uint8_t sn[AUTH_NONCE_LEN], cn[AUTH_NONCE_LEN], p[AUTH_PROOF_LEN], q[AUTH_PROOF_LEN];
    cr_assert_eq(auth_random(sn, sizeof(sn)), 0);
    cr_assert_eq(auth_random(cn, sizeof(cn)), 0);
    cr_assert(memcmp(sn, cn, sizeof(sn)) != 0);
    char name[] = "ds1", cid[] = "c0ffee", sid[] = "server-1";
    struct auth_claims cl = {cid, sid};
    auth_proof(&k, 0, sn, cn, name, &cl, p);
    unsigned before = memcmp_calls;
    cr_assert_eq(auth_proof_check(&k, 0, sn, cn, name, &cl, p, sizeof(p)), 0);
    cr_assert_gt(memcmp_calls, before, "the compare is CRYPTO_memcmp");
    cr_assert_eq(auth_proof_check(&k, 0, sn, cn, name, &cl, p, sizeof(p) - 1), IMG_EAUTH);
    /* the server's proof differs from the client's: no reflection */
    auth_proof(&k, 1, sn, cn, name, &cl, q);
    cr_assert(memcmp(p, q, sizeof(p)) != 0);
    cr_assert_eq(auth_proof_check(&k, 1, sn, cn, name, &cl, q, sizeof(q)), 0);
    cr_assert_eq(auth_proof_check(&k, 1, sn, cn, name, &cl, p, sizeof(p)), IMG_EAUTH);
    /* any changed byte of any input fails */
    flip_check(&k, p, sizeof(p), sn, cn, name, &cl, p);
    flip_check(&k, sn, sizeof(sn), sn, cn, name, &cl, p);
    flip_check(&k, cn, sizeof(cn), sn, cn, name, &cl, p);
    flip_check(&k, (uint8_t *)name, strlen(name), sn, cn, name, &cl, p);
    flip_check(&k, (uint8_t *)cid, strlen(cid), sn, cn, name, &cl, p);
    flip_check(&k, (uint8_t *)sid, strlen(sid), sn, cn, name, &cl, p);
    flip_check(&k, k.secret, k.secret_len, sn, cn, name, &cl, p);
    /* the fields are length-delimited: moving a byte from one to the next fails */
    struct auth_claims moved = {"c0ffees", "erver-1"};
    cr_assert_eq(auth_proof_check(&k, 0, sn, cn, name, &moved, p, sizeof(p)), IMG_EAUTH);
    struct auth_claims empty = {"", ""};
    cr_assert_eq(auth_proof_check(&k, 0, sn, cn, name, &empty, p, sizeof(p)), IMG_EAUTH);
}

Test(auth, bearer_lookup)
{
    struct auth_key keys[2] = {{.name = "w", .role = AUTH_WRITER, .secret_len = 16},
                               {.name = "o", .role = AUTH_OPERATOR, .secret_len = 16}};
    for (int i = 0; i < 16; i++) {
        keys[0].secret[i] = (uint8_t)(0x11 * (i % 16));
        keys[1].secret[i] = (uint8_t)(0xff - i);
    }
    struct auth_keys ks = {.keys = keys, .n = 2};
    const char *w = "00112233445566778899aabbccddeeff";
    unsigned before = memcmp_calls;
    cr_assert_eq(auth_keys_by_secret(&ks, w, strlen(w)), &keys[0]);
    cr_assert_eq(memcmp_calls - before, 2, "every key compared, in constant time");
    cr_assert_eq(auth_keys_by_secret(&ks, "00112233445566778899AABBCCDDEEFF", 32), &keys[0]);
    cr_assert_null(auth_keys_by_secret(&ks, "00112233445566778899aabbccddeefe", 32));
    cr_assert_null(auth_keys_by_secret(&ks, w, 30), "short");
    cr_assert_null(auth_keys_by_secret(&ks, "zz", 2));
    cr_assert_null(auth_keys_by_secret(NULL, w, 32));
}

Test(auth, refusal_log_rate_limited)
{
    unsigned long more = 99;
    /* Start at the beginning of a second, so the count runs within one. */
    time_t t0 = time(NULL);
    while (time(NULL) == t0)
        usleep(1000);
    int ok = 0;
    for (int i = 0; i < 50; i++)
        ok += auth_log_ok(&more);
    cr_assert_eq(ok, AUTH_LOG_PER_S, "at most %d WARNs a second", AUTH_LOG_PER_S);
    t0 = time(NULL);
    while (time(NULL) == t0)
        usleep(1000);
    cr_assert(auth_log_ok(&more));
    cr_assert_eq(more, 50 - AUTH_LOG_PER_S, "the next one says how many were dropped");
    cr_assert(auth_log_ok(&more));
    cr_assert_eq(more, 0);
}
