#!/bin/bash
# What a connection costs sesgate beyond its message (issue 15, 1 message per connection):
# runs sesgate under callgrind (network principal, no AUTH, smtp-sink upstream), warms it up
# with 20 messages, zeroes the counters, sends MESSAGES 10 KB messages from smtp-source over 4
# sessions, and dumps the counts of that part alone to /tmp/f15cg/OUTNAME.cg.1.
#   benches/connection_cost.sh target/release/sesgate one 400 ""     # 1 message per connection
#   benches/connection_cost.sh target/release/sesgate many 400 -d    # 100 per connection
# Instructions per connection = (totals of "one" - totals of "many") / 400 (see README).
# usage: connection_cost.sh BINARY OUTNAME MESSAGES [-d]
set -e
mkdir -p /tmp/f15cg
BIN=$1; OUT=$2; N=$3; D=$4
W=$(mktemp -d /tmp/f15cg/w.XXXX)
mkdir -p $W/policies
cp "$(dirname "$0")/../policies/AllowSendingOnly.json" $W/policies/
printf '[[user]]\nname = "load-generator"\nnetworks = ["127.0.0.0/8"]\npolicies = ["AllowSendingOnly"]\n' > $W/policies/iam.toml
SP=$((20000 + RANDOM % 10000)); GP=$((SP+1))
/usr/sbin/smtp-sink -u nobody -c 127.0.0.1:$SP 1024 >$W/sink.out 2>/dev/null &
SINK=$!
cat > $W/sesgate.toml <<EOT
hostname = "sesgate.test"
[account]
identities = ["example.com"]
[iam]
dir = "policies"
[[listener]]
address = "127.0.0.1:$GP"
tls = "none"
auth = "none"
[upstream]
url = "smtp://127.0.0.1:$SP"
pool_size = 32
[limits]
max_connections = 20000
max_connections_per_ip = 20000
EOT
valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file=/tmp/f15cg/$OUT.cg $BIN serve --config $W/sesgate.toml >$W/log 2>&1 &
VG=$!
for i in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$GP) 2>/dev/null && break; sleep 0.1; done
# warm-up: 20 messages
/usr/sbin/smtp-source -s 4 -m 20 -l 10240 -M client.test -f sender@example.com -t rcpt@example.com 127.0.0.1:$GP
callgrind_control -z $VG >/dev/null
/usr/sbin/smtp-source $D -s 4 -m $N -l 10240 -M client.test -f sender@example.com -t rcpt@example.com 127.0.0.1:$GP
sleep 1
callgrind_control -d $VG >/dev/null
sleep 1
kill -TERM $VG; wait $VG || true
kill $SINK
