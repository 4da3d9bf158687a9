/* addr.h - the form of a server address on the wire.
 *
 * Every address the protocol carries (Replica.addr, a server's listen
 * address, the nameserver's address a client is given) is "HOST:PORT" or
 * "[V6]:PORT": a host of fewer than ADDR_HOST_MAX characters, a decimal
 * port up to 65535, the whole shorter than ADDR_MAX. Checking the form does
 * no name lookup. Calls nothing outside the C library. */
#ifndef IMG_ADDR_H
#define IMG_ADDR_H

#define ADDR_MAX 64       /* "HOST:PORT" with its NUL */
#define ADDR_HOST_MAX 256 /* the host part with its NUL */
#define ADDR_PORT_MAX 8   /* the port part with its NUL */

/* Splits "HOST:PORT" / "[V6]:PORT" into host (brackets removed) and port
 * strings. Returns 0, or IMG_EINVAL when addr (may be NULL) has another
 * form; host and port are then unspecified. */
int addr_split(const char *addr, char host[ADDR_HOST_MAX], char port[ADDR_PORT_MAX]);

/* Returns 0 when addr (may be NULL) has the form above, else IMG_EINVAL. */
int addr_check(const char *addr);

#endif
