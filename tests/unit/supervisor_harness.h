/*
 * What the suites of the supervisor (test_supervisor.c, test_record.c)
 * share: waiting until a job is final. Helpers every suite uses live in
 * test_common.h.
 */
#ifndef JW_TESTS_UNIT_SUPERVISOR_HARNESS_H
#define JW_TESTS_UNIT_SUPERVISOR_HARNESS_H

#include <check.h>
#include <uv.h>

#include "../test_common.h"
#include "jobworker/supervisor.h"

struct test_job_wait {
  jw_supervisor_t *sup;
  const char *id;
  jw_job_info_t info;
};

/* A predicate for test_run_until: the job has left RUNNING. */
static inline int test_job_final(void *arg) {
  struct test_job_wait *w = arg;
  ck_assert_int_eq(jw_supervisor_status(w->sup, w->id, NULL, &w->info), 0);
  return w->info.proc.state != JW_PROC_RUNNING;
}

/* Runs loop until job id of sup is final (20 s at most); returns its info. */
static inline jw_job_info_t
test_wait_final(uv_loop_t *loop, jw_supervisor_t *sup, const char *id) {
  struct test_job_wait w = {sup, id, {0}};
  ck_assert(test_run_until(loop, test_job_final, &w, 20000));
  return w.info;
}

#endif /* JW_TESTS_UNIT_SUPERVISOR_HARNESS_H */
