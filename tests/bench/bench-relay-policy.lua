-- bench-relay-policy.lua: kumod for the relay benchmark of tests/bench/run.sh.
-- Rendered by run.sh, which replaces @DIR@ (the run directory), @PORT@ (the
-- listener port) and @SINK_PORT@ (where relay-throughput.sh starts
-- smtp-sink). Accepts bench.test from loopback into the durable RocksDB
-- spool and relays it to 127.0.0.1:@SINK_PORT@ (mx_list: no DNS involved).
local kumo = require 'kumo'

kumo.on('init', function()
  -- Nothing answers here: kumod must never ask a real name server while
  -- the benchmark runs (loopback only).
  kumo.dns.configure_resolver { name_servers = { '127.0.0.1:9' } }
  kumo.define_spool { name = 'data', path = '@DIR@/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '@DIR@/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = '@DIR@/logs', max_segment_duration = '10s' }
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:@PORT@',
    hostname = 'bench-kumod.test',
    relay_hosts = { '127.0.0.1' },
    max_connections = 1024,
  }
end)

kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'bench.test' then
    return kumo.make_listener_domain { relay_to = true }
  end
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'bench.test' then
    return kumo.make_queue_config {
      retry_interval = '10s',
      max_retry_interval = '1m',
      protocol = { smtp = { mx_list = { '127.0.0.1:@SINK_PORT@' } } },
    }
  end
  return kumo.make_queue_config {}
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    -- the sink is on loopback, which the default prohibited_hosts blocks
    prohibited_hosts = {},
    enable_tls = 'Disabled',
    connection_limit = 32,
    max_deliveries_per_connection = 1024,
    idle_timeout = '5s',
  }
end)
