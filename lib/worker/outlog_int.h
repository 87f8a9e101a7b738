/*
 * jw_outlog internals that only the tests use.
 */
#ifndef JW_WORKER_OUTLOG_INT_H
#define JW_WORKER_OUTLOG_INT_H

#include <stdint.h>

#include "jobworker/outlog.h"

/* Bytes of output the reader has consumed. */
uint64_t jw__outlog_reader_offset(const jw_outlog_reader_t *reader);

/* preads the outlog has issued on this thread (readers and reopen). */
uint64_t jw__outlog_reader_preads(void);

#endif /* JW_WORKER_OUTLOG_INT_H */
