#!/bin/bash
# A hostile "agent CLI": what a prompt-injected agent would try with Bash.
# Each probe prints `BLOCKED <name>` or `ESCAPED <name> <detail>`; the report also goes
# to $HIVE_STATE_DIR/hostile-report.txt. Then it prints one stream-json `result` event,
# so a harness takes it for a finished turn. Targets come from HOSTILE_* variables that
# the test sets in the *harness's* environment: if they reach us, that is an escape too.
report="${HIVE_STATE_DIR:-$PWD}/hostile-report.txt"
: > "$report" 2>/dev/null || report=/dev/null
say() { echo "$*"; echo "$*" >> "$report"; }
probe() {  # probe NAME COMMAND...: the command succeeding is an escape
  local name=$1; shift
  local out
  if out=$("$@" 2>/dev/null); then say "ESCAPED $name ${out:0:80}"; else say "BLOCKED $name"; fi
}
for kv in "$@"; do case "$kv" in HOSTILE_*=*) export "${kv?}";; esac; done

probe remount-root mount -o remount,rw /
probe remount-usr mount -o remount,rw /usr
probe mount-tmpfs mount -t tmpfs none /mnt
probe write-etc sh -c 'echo pwned > /etc/hive-escape && echo wrote'
probe write-usr sh -c 'echo pwned > /usr/hive-escape && echo wrote'
probe read-operator-home cat "$HOSTILE_OPERATOR_SECRET"
probe read-shadow cat /etc/shadow
probe read-other-agent ls -A "$HOSTILE_OTHER_AGENT_DIR"
probe read-nats-creds ls -A "$HOSTILE_NATS_DIR"
probe read-operator-token cat "$HOSTILE_OPERATOR_TOKEN_FILE"
probe read-broker-db head -c 16 "$HOSTILE_BROKER_DB"
probe env-secrets sh -c 'env | grep -E "^(HIVE_OPERATOR_TOKEN|HIVE_NATS_[A-Z_]+|SSH_AUTH_SOCK|AWS_[A-Z_]+|HOSTILE_SECRET[A-Z_]*)="'
probe harness-env sh -c 'for p in /proc/[0-9]*; do tr "\0" "\n" < $p/environ 2>/dev/null; done | grep -E "^(HIVE_OPERATOR_TOKEN|HIVE_NATS_PASSWORD|HIVE_NATS_CREDS)="'
probe tcp-host-loopback timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$HOSTILE_TCP_PORT && echo connected"
probe tcp-via-proxy timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/58080; printf 'CONNECT 127.0.0.1:$HOSTILE_TCP_PORT HTTP/1.1\r\n\r\n' >&3; head -1 <&3 | grep -q ' 200 ' && echo tunnelled"
probe http-via-proxy timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/58080; printf 'GET http://127.0.0.1:$HOSTILE_TCP_PORT/ HTTP/1.1\r\nHost: x\r\n\r\n' >&3; head -1 <&3 | grep -q ' 200 ' && echo fetched"
probe unix-socket timeout 3 python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')" "$HOSTILE_UNIX_SOCKET"
probe abstract-socket timeout 3 python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect('\0'+sys.argv[1]); print('connected')" "$HOSTILE_ABSTRACT_SOCKET"
probe capabilities sh -c '! grep -q "^CapEff:[[:space:]]*0*$" /proc/self/status && echo has-caps'
probe nested-userns unshare -U true
probe see-host-pids sh -c '[ "$(ls -d /proc/[0-9]* | wc -l)" -gt 30 ] && echo many'
probe write-harness-files sh -c "echo x >> '$HIVE_STATE_DIR/events.sqlite' && echo wrote"
probe chroot-escape sh -c 'cd / && chroot . true && echo chroot'
# processes that try to outlive the turn (the test looks for the marker afterwards)
setsid nohup sleep 987654 >/dev/null 2>&1 &
(sleep 987653 &) ; disown -a 2>/dev/null
say "BLOCKED outlive-started"
if [ -n "$HOSTILE_FORK" ]; then  # a bounded fork bomb: how many processes can we hold at once?
  held=$(python3 -c "
import os, signal, time
kids = []
for _ in range($HOSTILE_FORK):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30); os._exit(0)
    kids.append(pid)
print(len(kids))
for k in kids: os.kill(k, signal.SIGKILL)
" 2>/dev/null)
  if [ "${held:-0}" -ge "$HOSTILE_FORK" ]; then say "ESCAPED fork-bomb held=$held"; else say "BLOCKED fork-bomb held=${held:-0}"; fi
fi
if [ -n "$HOSTILE_MEMORY_MB" ]; then  # allocate and touch more memory than the limit
  python3 -c "b = bytearray($HOSTILE_MEMORY_MB * 1024 * 1024); print(len(b))" >/dev/null 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then say "ESCAPED memory ${HOSTILE_MEMORY_MB}MB"; else say "BLOCKED memory rc=$rc"; fi
fi
say "DONE"
printf '{"type":"result","subtype":"success","is_error":false,"result":"hostile probes done","session_id":"hostile","num_turns":1,"usage":{"input_tokens":1,"output_tokens":1}}\n'
