/* policy_glue_msg.c - the policy's view of a message: the policy_msg_ops
 * table of struct policy_host, adapters from void pointers to the message
 * API (message.h), so that policy/ knows no daemon type and message.c
 * knows no policy. Loop thread only. */
#include "policy_glue.h"

#include <stdint.h>

#include "message.h"
#include "policy.h"

/* policy_msg_ops adapters: the policy sees messages as void pointers. */
static void
policy_glue_msg_ref(void *msg)
{
    message_ref(msg);
}

static void
policy_glue_msg_unref(void *msg)
{
    message_unref(msg);
}

static const char *
policy_glue_msg_id(void *msg)
{
    return message_id(msg);
}

static const char *
policy_glue_msg_sender(void *msg)
{
    return message_sender(msg);
}

static const char *
policy_glue_msg_recipient(void *msg)
{
    return message_recipient(msg);
}

static int
policy_glue_msg_set_sender(void *msg, const char *addr)
{
    return message_set_sender(msg, addr);
}

static int
policy_glue_msg_set_recipient(void *msg, const char *addr)
{
    return message_set_recipient(msg, addr);
}

static json_t *
policy_glue_msg_meta(void *msg)
{
    return message_meta(msg);
}

static struct buf *
policy_glue_msg_data(void *msg)
{
    return message_data(msg);
}

static uint32_t
policy_glue_msg_num_attempts(void *msg)
{
    return message_num_attempts(msg);
}

static const char *
policy_glue_msg_queue_name(void *msg)
{
    return message_queue_name(msg);
}

void
policy_glue_msg_ops(struct policy_msg_ops *ops)
{
    ops->ref = policy_glue_msg_ref;
    ops->unref = policy_glue_msg_unref;
    ops->id = policy_glue_msg_id;
    ops->sender = policy_glue_msg_sender;
    ops->recipient = policy_glue_msg_recipient;
    ops->set_sender = policy_glue_msg_set_sender;
    ops->set_recipient = policy_glue_msg_set_recipient;
    ops->meta = policy_glue_msg_meta;
    ops->data = policy_glue_msg_data;
    ops->num_attempts = policy_glue_msg_num_attempts;
    ops->queue_name = policy_glue_msg_queue_name;
}
