/*
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, the same
 * messages) answered from the FileDescriptorProtos compiled into the
 * library (proto/meson.build embeds protoc's descriptor set). Internal.
 */
#ifndef JW_SERVICE_REFLECTION_H
#define JW_SERVICE_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "jobworker/rpc.h"

/* ServerReflectionInfo: one request, one response (docs/protocol.md). */
void jw__reflection_info(jw_rpc_call_t *call, const uint8_t *req, size_t len,
                         void *data);

#endif /* JW_SERVICE_REFLECTION_H */
