/* frame.h - the frame header of the native protocol (docs/protocol.md).
 *
 * Every message on a native port is one frame:
 *
 *   +--------+---------+------+--------+------------+----------+----------+
 *   | magic  | version | type | status | request_id | head_len | body_len |
 *   | u16    | u8      | u8   | i32    | u64        | u32      | u32      |
 *   +--------+---------+------+--------+------------+----------+----------+
 *   followed by head_len bytes of protobuf head, then body_len raw bytes.
 *
 * All integers are big-endian. A response has the request's type with
 * FRAME_RESPONSE set, the same request_id, and status 0 or a negative error
 * code (base/err.h); a response with a non-zero status may have no head. */
#ifndef IMG_FRAME_H
#define IMG_FRAME_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC 0x4953u /* "IS" */
#define FRAME_VERSION 1
#define FRAME_HEADER_SIZE 24
#define FRAME_MAX_HEAD (16u << 20) /* a full block report fits well */
#define FRAME_MAX_BODY (64u << 20) /* one file or one record */
#define FRAME_RESPONSE 0x80u

/* Message types. The protobuf head of each is named in docs/protocol.md. */
enum frame_type {
    FT_HEARTBEAT = 1,      /* ds -> ns: Heartbeat / HeartbeatResp */
    FT_CREATE_BLOCK = 2,   /* ns -> ds: CreateBlock / CreateBlockResp */
    FT_ALLOC_WRITE = 3,    /* client -> ns: AllocWrite / AllocWriteResp */
    FT_LOOKUP = 4,         /* client -> ns: Lookup / LookupResp */
    FT_CLUSTER_STATUS = 5, /* client -> ns: ClusterStatus / ClusterStatusResp */
    FT_DRAIN = 6,          /* admin -> ns: Drain / DrainResp */
    FT_LIST_TASKS = 7,     /* admin -> ns: ListTasks / ListTasksResp */
    FT_SET_REPLICAS = 8,   /* ns -> ds: SetReplicas / SetReplicasResp */
    FT_NOTE_DELETE = 9,    /* ds primary -> ns (session): NoteDelete / NoteDeleteResp */
    FT_WRITE = 16,         /* client -> ds primary: Write + body / WriteResp */
    FT_READ = 17,          /* client -> ds: Read / ReadResp + body */
    FT_STAT = 18,          /* client -> ds: Read / ReadResp */
    FT_DELETE = 19,        /* client -> ds primary: Delete / DeleteResp */
    FT_REPL_APPEND = 20,   /* ds primary -> ds: ReplAppend + body / ReplAppendResp */
    FT_REPLICATE_BLOCK = 21, /* ns -> ds: ReplicateBlock / ReplicateBlockResp */
    FT_READ_BLOCK = 22,    /* ds -> ds: ReadBlock / ReadBlockResp + body */
    FT_SEAL_BLOCK = 23,    /* ns -> ds: SealBlock / SealBlockResp */
    FT_DELETE_BLOCK = 24,  /* ns -> ds: DeleteBlock / DeleteBlockResp */
    FT_STAT_BLOCK = 25,    /* ns -> ds: StatBlock / BlockInfo */
    FT_CANCEL_COPY = 26,   /* ns -> ds: CancelCopy / CancelCopyResp */
    FT_APPLY_TOMBSTONES = 27, /* ns -> ds: ApplyTombstones / ApplyTombstonesResp */
    FT_COMPACT_BLOCK = 32, /* ns -> ds: CompactBlock / CompactBlockResp */
    FT_VERIFY = 33,        /* admin -> ds: Verify / VerifyResp */
    FT_EC_ENCODE = 34,     /* ns -> ds: EcEncode / EcEncodeResp */
    FT_EC_PUT_SHARD = 35,  /* ds -> ds: EcPutShard + body / EcPutShardResp */
    FT_EC_READ_RANGE = 36, /* ds -> ds: EcReadRange / EcReadRangeResp + body */
    FT_EC_REBUILD = 37,    /* ns -> ds: EcRebuild / EcRebuildResp */
    FT_EC_TOMB = 38,       /* ds -> ds: EcTomb / EcTombResp */
    FT_ADMIN_LIST_BLOCKS = 40,  /* admin -> ns: AdminListBlocks / AdminListBlocksResp */
    FT_ADMIN_BLOCK_INFO = 41,   /* admin -> ns: AdminBlockInfo / AdminBlockInfoResp */
    FT_ADMIN_SERVER_RATES = 42, /* admin -> ns: AdminServerRates / AdminServerRatesResp */
    FT_ADMIN_CANCEL_TASK = 43,  /* admin -> ns: AdminCancelTask / AdminCancelTaskResp */
    FT_ADMIN_READONLY = 44,     /* admin -> ns: AdminReadonly / AdminReadonlyResp */
    FT_ADMIN_SETTINGS = 45,     /* admin -> ns: AdminSettings / AdminSettingsResp */
    FT_ADMIN_SET_SETTING = 46,  /* admin -> ns: AdminSetSetting / AdminSetSettingResp */
    FT_ADMIN_REBALANCE = 47,    /* admin -> ns: AdminRebalance / AdminRebalanceResp */
    FT_ADMIN_COMPACT = 48,      /* admin -> ns: AdminCompact / AdminCompactResp */
    FT_ADMIN_REPAIR = 49,       /* admin -> ns: AdminRepair / AdminRepairResp */
    FT_ADMIN_STEP_DOWN = 50,    /* admin -> ns: AdminStepDown / AdminStepDownResp */
    FT_ADMIN_EC_ENCODE = 51,    /* admin -> ns: AdminEcEncode / AdminEcEncodeResp */
    FT_AUTH_HELLO = 56,    /* any -> ns, ds: AuthHello / AuthHelloResp (server nonce) */
    FT_AUTH = 57,          /* any -> ns, ds: Auth / AuthResp (docs/security.md) */
};

struct frame_header {
    uint8_t version;
    uint8_t type;
    int32_t status;
    uint64_t request_id;
    uint32_t head_len;
    uint32_t body_len;
};

/* Writes `h` (with FRAME_MAGIC) into out[FRAME_HEADER_SIZE]. */
void frame_encode(const struct frame_header *h, uint8_t out[FRAME_HEADER_SIZE]);

/* Parses and validates a header from in[FRAME_HEADER_SIZE]. Returns 0, or
 * IMG_EPROTO for a bad magic or version, IMG_ETOOBIG when a length exceeds
 * FRAME_MAX_HEAD / FRAME_MAX_BODY. On failure *h is unspecified. */
int frame_decode(const uint8_t in[FRAME_HEADER_SIZE], struct frame_header *h);

/* Returns the name of a message type ("WRITE") or "?" for unknown ones. */
const char *frame_type_name(unsigned type);

#endif
