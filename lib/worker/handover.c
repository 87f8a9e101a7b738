/*
 * Adopting the running jobs a reload hands over (supervisor_int.h,
 * jw__job_adopt). Until a process can hand its jobs to the binary it
 * exec's, nothing is adopted: the restore ends such a job as one that was
 * running when its server went away.
 */
#include <errno.h>

#include "supervisor_int.h"

int jw__job_adopt(jw_supervisor_t *sup, struct job *j,
                  const jw_job_handover_t *h) {
  (void)sup;
  (void)j;
  (void)h;
  return -ENOSYS;
}
