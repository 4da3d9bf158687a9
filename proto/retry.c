/* retry.c - the retry table of uploads, reads and deletes (see retry.h). */
#include "proto/retry.h"

#include "base/err.h"

#include <errno.h>

#define F RETRY_FINAL
#define O RETRY_OTHER
#define W RETRY_WAIT

static const struct {
    int err;
    unsigned char act[RETRY_NSTEPS];
} table[] = {
    /*                   WRITE ALLOC READ DELETE */
    {IMG_EREPL,          {O,    F,    O,   O}}, /* DELETE: a replica failed; again */
    {IMG_EFULL,          {O,    F,    O,   F}},
    {IMG_ESEALED,        {O,    F,    O,   F}},
    {IMG_ENOTPRIMARY,    {O,    F,    O,   O}},
    {IMG_ENOBLOCKHERE,   {O,    F,    O,   O}},
    {IMG_ECONN,          {O,    W,    O,   O}},
    {IMG_ETIMEDOUT,      {O,    W,    O,   O}},
    {IMG_EUNAVAIL,       {O,    W,    O,   O}}, /* no live holder, or busy: later */
    {IMG_EPROTO,         {O,    F,    O,   O}}, /* DELETE: that server (or something in
                                                   * its place) spoke garbage; again */
    {IMG_ECORRUPT,       {O,    F,    O,   F}}, /* WRITE: the primary got other bytes */
    {IMG_ENOBLOCK,       {F,    W,    O,   F}},
    {IMG_ESAFEMODE,      {F,    W,    O,   O}},
    {IMG_ENOTLEADER,     {F,    W,    O,   O}}, /* ALLOC: no nameserver leads yet (an
                                                   * election): later */
    {IMG_EDELETED,       {F,    F,    F,   F}},
    {IMG_EVIEWOLD,       {O,    F,    O,   O}}, /* the server's lease lapsed: elsewhere, again */
    {IMG_EBUSY,          {W,    F,    O,   O}}, /* WRITE: the primary is at its receive
                                                   * budget; the same block, a little later */
    {IMG_EAUTH,          {F,    F,    F,   F}}, /* no key, wrong key: never retried */
    {IMG_EPERM,          {F,    F,    F,   F}},
    {IMG_EKEYFILE,       {F,    F,    F,   F}},
    {-ENOSPC,            {O,    F,    O,   F}}, /* WRITE: that disk is full; another block */
    {-ECANCELED,         {O,    F,    O,   O}}, /* the server was stopping: elsewhere, again */
};

/* Errors not in the table: final, but a read passes to the next replica. */
static const unsigned char other[RETRY_NSTEPS] = {F, F, O, F};

enum retry_action retry_action(enum retry_step step, int err)
{
    if ((unsigned)step >= RETRY_NSTEPS)
        return RETRY_FINAL;
    for (unsigned i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (table[i].err == err)
            return (enum retry_action)table[i].act[step];
    return (enum retry_action)other[step];
}

int retry_write_excludes(int err)
{
    return err != IMG_ECORRUPT;
}
