/* avail.c - availability accounting of the chaos driver (invariant 7, issue
 * 20): every read, delete and upload of the load is attributed to the fault
 * in progress when it ran, or to "between faults", and counted as served or
 * failed; the report prints one row per fault kind with the error names
 * behind the failures.
 *
 * A fault is in progress from its injection until the cluster is whole
 * again (run_faults in faults.c marks both). An operation that started
 * between faults and was still running when a fault began counts for that
 * fault. Operations while the nameserver process was down (killed by a
 * fault, at any moment of the operation) go to their own row and are not
 * counted by the invariant. Reads of files the run deleted, or was deleting,
 * are left out by the caller (chaos.c). "Had a live replica" is approximated:
 * every file has CHAOS_REPLICAS copies and every fault kind but the power
 * cut of every dataserver touches one server, so a failed read or delete is
 * counted unless its fault is that one (then it is shown as "no live
 * replica", not counted). Every failed upload is counted, except while etcd
 * is down in the HA mode (no nameserver may lead: uploads and deletes are
 * shown as "no live replica" then, reads are counted), and uploads that
 * found no writable block during a fault once the small tmpfs is full
 * (env.c): with CHAOS_REPLICAS copies per block and one of three servers
 * full, a fault on another leaves fewer servers with room than copies, so
 * no block can be placed (approximated: the fault's target is not
 * checked; shown as "no live replica" too).
 *
 * It calls nothing of the project but imgstore_strerror and chaos.c's
 * count_err/print_errs; chaos.c and faults.c call it. */
#include "tests/chaos/chaos.h"

#include <stdio.h>
#include <string.h>

#define AVAIL_BETWEEN F_KINDS       /* row: between faults */
#define AVAIL_NS_DOWN (F_KINDS + 1) /* row: the nameserver process was down */
#define AVAIL_ROWS (F_KINDS + 2)

static const char *op_names[A_OPS] = {"reads", "deletes", "uploads"};

struct inv inv_avail = {.what = "no request failed that could have been served"};

static atomic_int fault_now = -1;  /* the fault in progress, -1: none */
static atomic_int fault_last = -1; /* the last fault begun */
static atomic_ulong fault_seq;     /* faults begun */
static atomic_ulong ns_seq;        /* odd while the nameserver is down */

struct row {
    unsigned long total[A_OPS], failed[A_OPS], no_replica[A_OPS];
    struct errs errs[A_OPS];
};
static struct row rows[AVAIL_ROWS];
static pthread_mutex_t avail_lock = PTHREAD_MUTEX_INITIALIZER;

void avail_fault_begin(enum fault kind)
{
    fault_last = (int)kind;
    fault_seq++;
    fault_now = (int)kind;
}

void avail_fault_end(void)
{
    fault_now = -1;
}

void avail_ns_down(int down)
{
    if ((int)(ns_seq & 1) != !!down)
        ns_seq++;
}

void avail_start(struct avail_mark *m)
{
    m->ns_seq = ns_seq;
    m->fault_seq = fault_seq;
    m->fault = fault_now;
    m->start_ms = cluster_now_ms();
}

/* Only the power cut of every dataserver takes every replica away. */
static int takes_every_replica(int row)
{
    return row == F_POWER_ALL;
}

/* While etcd is down no nameserver may lead (HA mode): uploads and deletes
 * (primaries wait for a leader's answer) cannot be served; reads can. */
static int needs_a_leader(int row, enum avail_op op)
{
    return row == F_HA_ETCD && op != A_READ;
}

/* An upload with no writable block while a fault is in progress and the
 * tmpfs server is full: fewer servers than copies may have room. */
static int no_room_for_copies(int row, enum avail_op op, int rc)
{
    return op == A_UPLOAD && rc == IMGSTORE_ENOBLOCK && row < F_KINDS && full_since_ms >= 0;
}

void avail_end(const struct avail_mark *m, enum avail_op op, int rc, const char *name)
{
    int row;
    if ((m->ns_seq & 1) || ns_seq != m->ns_seq)
        row = AVAIL_NS_DOWN;
    else if (m->fault >= 0)
        row = m->fault;
    else if (fault_seq != m->fault_seq)
        row = fault_last;
    else
        row = AVAIL_BETWEEN;
    int excused = rc != 0 && ((op != A_UPLOAD && takes_every_replica(row)) ||
                              needs_a_leader(row, op) || no_room_for_copies(row, op, rc));
    struct row *r = &rows[row];
    pthread_mutex_lock(&avail_lock);
    r->total[op]++;
    if (excused)
        r->no_replica[op]++;
    else if (rc != 0)
        r->failed[op]++;
    pthread_mutex_unlock(&avail_lock);
    if (rc != 0)
        count_err(&r->errs[op], rc);
    if (row == AVAIL_NS_DOWN || excused)
        return;
    if (rc == 0) {
        inv_avail.passed++;
        return;
    }
    inv_avail.failed++;
    /* Each counted failure is said, to be matched with the servers' logs. */
    say("avail: %s %s failed after %lld ms (%s): %s", op_names[op], name ? name : "-",
        (long long)(cluster_now_ms() - m->start_ms),
        row < F_KINDS ? fault_names[row] : "between faults", imgstore_strerror(rc));
}

static void print_row(const char *name, const struct row *r)
{
    char cell[A_OPS][32];
    for (int op = 0; op < A_OPS; op++)
        snprintf(cell[op], sizeof(cell[op]), "%lu/%lu", r->failed[op], r->total[op]);
    printf("chaos: avail: %-42s %13s %13s %13s\n", name, cell[A_READ], cell[A_DELETE],
           cell[A_UPLOAD]);
    for (int op = 0; op < A_OPS; op++)
        if (r->no_replica[op])
            printf("chaos: avail:   %s failed with no live replica (not counted): %lu\n",
                   op_names[op], r->no_replica[op]);
    for (int op = 0; op < A_OPS; op++)
        if (r->errs[op].n[0]) {
            char what[64];
            snprintf(what, sizeof(what), "avail:   %s", op_names[op]);
            print_errs(what, &r->errs[op]);
        }
}

void avail_report(int strict)
{
    printf("chaos: avail: availability per fault kind, failed/total (client deadline %d ms)\n",
           CHAOS_CLIENT_TIMEOUT_MS);
    printf("chaos: avail: %-42s %13s %13s %13s\n", "fault in progress", op_names[A_READ],
           op_names[A_DELETE], op_names[A_UPLOAD]);
    for (int k = 0; k < F_KINDS; k++)
        if (kind_in_use(k))
            print_row(fault_names[k], &rows[k]);
    print_row("between faults", &rows[AVAIL_BETWEEN]);
    print_row("nameserver process down (not counted)", &rows[AVAIL_NS_DOWN]);
    if (!strict)
        printf("chaos: availability (invariant 7, %s; reported, not enforced: "
               "CHAOS_AVAIL_STRICT=1 enforces it): %lu requests served, %lu failed that could "
               "have been served\n",
               inv_avail.what, (unsigned long)inv_avail.passed, (unsigned long)inv_avail.failed);
}
