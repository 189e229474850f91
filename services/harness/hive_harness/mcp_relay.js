// The `hive` MCP server as the agent CLI starts it inside the sandbox: a byte relay
// between this process's stdio and the harness's MCP socket (argv: SOCKET). The tools
// themselves run in the harness, outside the sandbox, under the agent's own identity.
'use strict';
const net = require('net');

const sock = net.connect(process.argv[2]);
sock.on('error', (e) => { process.stderr.write(`hive mcp relay: ${e.message}\n`); process.exit(1); });
sock.on('close', () => process.exit(0));
process.stdin.on('end', () => sock.end());
process.stdin.pipe(sock);
sock.pipe(process.stdout);
