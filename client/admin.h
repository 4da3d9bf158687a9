/* admin.h - internal admin calls of the client library, used by ds-admin and
 * the integration tests. Not part of the public API (imgstore.h). */
#ifndef IMGSTORE_ADMIN_H
#define IMGSTORE_ADMIN_H

#include "client/imgstore.h"
#include "proto/imgstore.pb-c.h"

/* Asks the nameserver for the cluster status. On success *out is owned by the
 * caller and freed with imgstore_admin_free_status. Returns 0 or an error. */
int imgstore_admin_cluster_status(imgstore_t *h, Imgstore__ClusterStatusResp **out);

/* Frees a status returned above. NULL-safe. */
void imgstore_admin_free_status(Imgstore__ClusterStatusResp *st);

/* Sends one request of frame `type` with head `req` (no body) to `addr`, or
 * to the nameserver when addr is NULL, under the handle's timeouts, and
 * unpacks a successful answer with `desc`. On success *out is owned by the
 * caller (free with protobuf_c_message_free_unpacked). Returns 0, the
 * server's error status, or a connection/protocol error (*out NULL). */
int imgstore_admin_call(imgstore_t *h, const char *addr, unsigned type,
                        const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                        ProtobufCMessage **out);

#endif
