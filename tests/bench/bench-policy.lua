-- bench-policy.lua: kumod for tests/bench/run.sh. Rendered by run.sh, which
-- replaces @DIR@ (the run directory) and @PORT@ (the listener port).
-- Accepts bench.test from loopback into the durable RocksDB spool. There is
-- no route: the MX lookup goes to a dead name server, so every message just
-- waits in its scheduled queue (the injection and memory benchmarks).
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
