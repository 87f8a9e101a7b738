/*
 * The name of a job's log in the data directory: one definition, used by
 * the supervisor that writes it and by jw_supervisor_is_log_name.
 */
#ifndef JW_WORKER_LOGNAME_H
#define JW_WORKER_LOGNAME_H

/* "<dir>/<id>.log", malloc'd (free it with free()), or NULL. */
char *jw__supervisor_log_path(const char *dir, const char *id);

#endif /* JW_WORKER_LOGNAME_H */
