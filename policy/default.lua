-- default.lua: the policy that `make run` starts. Everything it writes lands
-- under var/run/ of the checkout that holds this file (ignored by git),
-- whatever directory kumod is started from.
-- It accepts mail on 127.0.0.1:2025, spools it, and delivers every message
-- to the maildir var/run/maildir (new mail lands in maildir/new/): nothing
-- leaves the machine. policy/examples/mx-delivery.lua delivers by MX.
local kumo = require 'kumo'

-- This file's folder (policy/), then its sibling var/run/.
local POLICY_DIR = debug.getinfo(1, 'S').source:match('^@(.*)/[^/]*$') or '.'
local RUN_DIR = POLICY_DIR .. '/../var/run'

kumo.on('init', function()
  -- One SMTP listener on the loopback interface. relay_hosts keeps its
  -- default ({'127.0.0.1', '::1'}), so local clients may relay anywhere.
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:2025',
  }

  -- The HTTP API (injection, admin, metrics) for kcli and curl, on the
  -- loopback interface only; 127.0.0.1 is a trusted host by default.
  kumo.start_http_listener {
    listen = '127.0.0.1:8000',
  }

  -- Message bodies and their metadata live in two RocksDB spools.
  kumo.define_spool {
    name = 'data',
    path = RUN_DIR .. '/spool/data',
    kind = 'RocksDB',
  }
  kumo.define_spool {
    name = 'meta',
    path = RUN_DIR .. '/spool/meta',
    kind = 'RocksDB',
  }

  -- JSON log records (Reception, Delivery, ...) as zstd segments in logs/,
  -- rotated every 10 seconds so they can be read soon after a test.
  kumo.configure_local_logs {
    log_dir = RUN_DIR .. '/logs',
    max_segment_duration = '10s',
  }
end)

-- No domain gets special treatment (relay_to, OOB, ARF): returning nil
-- leaves the decision to relay_hosts.
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  return nil
end)

-- Runs once per received message before the 250 reply. Messages go to the
-- scheduled queue named after the recipient domain, which is the default,
-- so there is nothing to set here.
kumo.on('smtp_server_message_received', function(msg, conn_meta)
end)

-- Every scheduled queue delivers into one local maildir instead of looking
-- up MX records, and retries a failed write after a minute.
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { maildir_path = RUN_DIR .. '/maildir' },
    retry_interval = '1m',
  }
end)
