/*
 * One intrusive doubly linked list for the whole library, in the shape of
 * libuv's uv__queue: a list head is a node linked to itself, an element
 * embeds a node, and jw__list_data() gets the element back from it.
 * Unlinking is O(1) and needs no head, a removed node is linked to itself
 * (so removing it twice is harmless), and iteration with _safe may unlink
 * the node it stands on.
 */
#ifndef JW_COMMON_LIST_H
#define JW_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct jw__list_s {
  struct jw__list_s *next;
  struct jw__list_s *prev;
} jw__list_t;

#define jw__list_data(node, type, field)                                       \
  ((type *)(void *)((char *)(node)-offsetof(type, field)))

/* Every node from first to last; the body must not unlink n. */
#define jw__list_foreach(n, head)                                              \
  for ((n) = (head)->next; (n) != (head); (n) = (n)->next)

/* As jw__list_foreach, but the body may unlink (or free) n. */
#define jw__list_foreach_safe(n, tmp, head)                                    \
  for ((n) = (head)->next, (tmp) = (n)->next; (n) != (head);                   \
       (n) = (tmp), (tmp) = (n)->next)

static inline void jw__list_init(jw__list_t *head) {
  head->next = head;
  head->prev = head;
}

static inline bool jw__list_empty(const jw__list_t *head) {
  return head->next == head;
}

/* Whether node is on a list (a removed or initialised node is not). */
static inline bool jw__list_linked(const jw__list_t *node) {
  return node->next != NULL && node->next != node;
}

/* The first node, or NULL for an empty list. */
static inline jw__list_t *jw__list_first(const jw__list_t *head) {
  return head->next == head ? NULL : head->next;
}

/* The last node, or NULL for an empty list. */
static inline jw__list_t *jw__list_last(const jw__list_t *head) {
  return head->prev == head ? NULL : head->prev;
}

static inline void jw__list_insert_tail(jw__list_t *head, jw__list_t *node) {
  node->next = head;
  node->prev = head->prev;
  node->prev->next = node;
  head->prev = node;
}

static inline void jw__list_insert_head(jw__list_t *head, jw__list_t *node) {
  node->next = head->next;
  node->prev = head;
  node->next->prev = node;
  head->next = node;
}

/* Moves every node of src, in order, to the end of dst; src is left empty. */
static inline void jw__list_move_all(jw__list_t *dst, jw__list_t *src) {
  if (src->next == src)
    return;
  src->next->prev = dst->prev;
  dst->prev->next = src->next;
  src->prev->next = dst;
  dst->prev = src->prev;
  src->next = src;
  src->prev = src;
}

/* Unlinks node and links it to itself; a node on no list is left as is. */
static inline void jw__list_remove(jw__list_t *node) {
  if (node->next == NULL || node->next == node)
    return;
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->next = node;
  node->prev = node;
}

#endif /* JW_COMMON_LIST_H */
