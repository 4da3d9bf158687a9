/* imgstore_version.c - the library's version at run time (imgstore.h).
 *
 * A program compares it with IMGSTORE_VERSION, the header it was built
 * with, to notice a library older than its header. */
#include "client/imgstore.h"

const char *imgstore_version(void) {
    return IMGSTORE_VERSION;
}
