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

#endif
