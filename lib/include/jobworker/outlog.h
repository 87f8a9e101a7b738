/*
 * jw_outlog: a job's output, append-only and file-backed. The design
 * document's StreamBuffer.
 *
 * Records are tagged stdout or stderr and kept byte-exact in arrival order.
 * The log holds a file descriptor and a few counters, never the output
 * itself, so its memory does not grow with the amount written. Readers are
 * cursors (jw_outlog_reader_t) that pull at their own pace.
 *
 * Lifetime: neither holds a loop handle, so both end synchronously, each
 * with one call that is safe at any time, also from a notify callback. A
 * log closed while readers are open lives on for them (they read to the
 * end) and is freed when the last of them closes: nothing a reader still
 * holds is freed under it. Closing a log twice aborts with a message.
 */
#ifndef JOBWORKER_OUTLOG_H
#define JOBWORKER_OUTLOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Which of a job's output streams a record came from. */
typedef enum { JW_STDOUT = 0, JW_STDERR = 1 } jw_stream_t;

typedef struct jw_outlog_s jw_outlog_t;
typedef struct jw_outlog_reader_s jw_outlog_reader_t;

/*
 * Called when a reader that last got JW_EAGAIN can make progress again
 * (new output, or the log was finished). Fires at most once per JW_EAGAIN.
 * The reader may be closed from inside the callback.
 */
typedef void (*jw_outlog_notify_cb)(jw_outlog_reader_t *reader, void *data);

/*
 * Creates the log file at path (O_CREAT|O_EXCL, mode 0600). Returns 0,
 * or -errno.
 */
int jw_outlog_create(const char *path, jw_outlog_t **out);

/*
 * Opens the log file a previous process left at path (O_NOFOLLOW), to be
 * read and appended to as if this process had written it: its records are
 * scanned, and a torn tail (a header or payload cut short by a crash, or
 * a header that is no record's) is cut off, so that readers never see
 * half a record. *cut, when not NULL, gets the bytes cut. Returns 0, or
 * -errno.
 */
int jw_outlog_reopen(const char *path, jw_outlog_t **out, uint64_t *cut);

/*
 * Appends one chunk of output. Returns 0, JW_ECLOSED after
 * jw_outlog_finish, JW_ELIMIT when some or all of it was past the cap
 * set with jw_outlog_set_max (the part that fit is kept), or -errno (the
 * log stays usable). What was not kept is counted as dropped.
 */
int jw_outlog_append(jw_outlog_t *log, jw_stream_t stream, const void *buf,
                     size_t len);

/*
 * Marks the log complete: no more appends. Readers see the end once their
 * cursor reaches it.
 */
void jw_outlog_finish(jw_outlog_t *log);

/* Output bytes appended so far (record payloads, not headers). */
uint64_t jw_outlog_bytes(const jw_outlog_t *log);

/*
 * Output bytes dropped because a write failed (disk full, ...) or because
 * they were past the cap.
 */
uint64_t jw_outlog_dropped(const jw_outlog_t *log);

/*
 * Bytes one record's header takes on disk. An append writes one record per
 * GiB of payload.
 */
#define JW_OUTLOG_RECORD_HDR 5

/*
 * Bytes the log's records take in its file (payloads and record headers):
 * what it costs on disk.
 */
uint64_t jw_outlog_disk_bytes(const jw_outlog_t *log);

/*
 * Counts n bytes of output as dropped without writing them (for a cap the
 * caller keeps); readers see it in jw_outlog_reader_dropped.
 */
void jw_outlog_drop(jw_outlog_t *log, uint64_t n);

/*
 * Caps the output kept: appends past max_bytes of payload are dropped
 * (counted by jw_outlog_dropped); 0 means no cap. Readers are unaffected.
 */
void jw_outlog_set_max(jw_outlog_t *log, uint64_t max_bytes);

/*
 * Ends the log: no more appends (as jw_outlog_finish; readers see the end
 * once they read to it). With unlink_file the file's name goes now; open
 * readers keep its data. The log is freed now when no reader is open, else
 * when the last one closes. Safe from a notify callback. Aborts when the
 * log was closed already and still lives for its readers.
 */
void jw_outlog_close(jw_outlog_t *log, int unlink_file);

/*
 * Opens a cursor at the start of the log. notify_cb may be NULL (then the
 * caller polls). Returns 0 or -errno / -ENOMEM.
 */
int jw_outlog_reader_open(jw_outlog_t *log, jw_outlog_notify_cb notify_cb,
                          void *data, jw_outlog_reader_t **out);

/*
 * Reads up to len bytes from the cursor, all of one stream: adjacent
 * records of the same stream are coalesced, a change of stream ends the
 * read. Returns the number of bytes (> 0) with *stream set, 0 at the end
 * (log finished and everything read), JW_EAGAIN when nothing is available
 * yet (the notify callback fires when there is), or -errno.
 */
ssize_t jw_outlog_read(jw_outlog_reader_t *reader, void *buf, size_t len,
                       jw_stream_t *stream);

/*
 * The log's jw_outlog_dropped, as seen through a reader (also after the
 * log was closed; final once a read returned 0).
 */
uint64_t jw_outlog_reader_dropped(const jw_outlog_reader_t *reader);

/* Closes the cursor. Safe at any time, including from its callback. */
void jw_outlog_reader_close(jw_outlog_reader_t *reader);

#ifdef __cplusplus
}
#endif

#endif /* JOBWORKER_OUTLOG_H */
