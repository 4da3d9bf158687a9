/* list.h - the two steps of an intrusive doubly linked list, written once.
 *
 * A node is any struct with `prev` and `next` pointers to its own type; a
 * list is an lvalue pointer to its first node (NULL when empty). Used by the
 * HTTP core's connections, the nameserver's peers and blockio's pending
 * appends (which keeps a tail of its own). Macros only: each argument may
 * be evaluated more than once, so pass plain lvalues. Calls nothing. */
#ifndef IMG_LIST_H
#define IMG_LIST_H

/* Links node n (not in any list) in front of the list `head`. */
#define DLIST_PUSH(head, n)              \
    do {                                 \
        (n)->prev = NULL;                \
        (n)->next = (head);              \
        if (head)                        \
            (head)->prev = (n);          \
        (head) = (n);                    \
    } while (0)

/* Unlinks node n from the list `head` it is in; n's own pointers are left as
 * they were. */
#define DLIST_UNLINK(head, n)            \
    do {                                 \
        if ((n)->prev)                   \
            (n)->prev->next = (n)->next; \
        else                             \
            (head) = (n)->next;          \
        if ((n)->next)                   \
            (n)->next->prev = (n)->prev; \
    } while (0)

#endif
