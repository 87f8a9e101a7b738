#include <string.h>

#include "jobworker/error.h"

const char *jw_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
  case JW_ENOTFOUND:
    return "job not found";
  case JW_EOWNER:
    return "job belongs to another owner";
  case JW_ECLOSED:
    return "closed";
  case JW_EAGAIN:
    return "nothing to read yet";
  case JW_ELIMIT:
    return "limit reached";
  case JW_ECANCELED:
    return "canceled";
  case JW_EINVAL:
    return "invalid argument";
  case JW_ETLS:
    return "TLS failure";
  case JW_EHTTP2:
    return "HTTP/2 protocol failure";
  case JW_EVERIFY:
    return "verification failed";
  case JW_EUNSUPPORTED:
    return "not supported on this host";
  default:
    break;
  }
  if (err < 0 && err > JW_ERR_BASE)
    return strerror(-err);
  return "unknown error";
}
