/* policy_glue.h - the daemon's side of the policy's configuration calls
 * (kumo.start_esmtp_listener, kumo.define_spool, ...): the policy_config_cb
 * of struct policy_host, with the struct kumod as its ctx. Loop thread. */
#ifndef KUMO_POLICY_GLUE_H
#define KUMO_POLICY_GLUE_H
#include <stddef.h>

#include <jansson.h>

struct policy_msg_ops;

/* Fill the policy's message operations (struct policy_host.msg). */
void policy_glue_msg_ops(struct policy_msg_ops *ops);

/* See policy_config_cb in policy.h. */
int policy_glue_config(void *ctx, const char *fn, json_t *params, char *err,
                       size_t errlen);
#endif /* KUMO_POLICY_GLUE_H */
