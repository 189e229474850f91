"""The wire contract: every subject Hive serves or publishes, one `Op` each.

Services build their endpoints from these (`Endpoint.of(ops.BROKER_SEND, h)`),
clients call them (`HiveClient.request(ops.CTL_STATE, Empty(), agent=a)`),
`hivewire.natsauth` derives each NATS user's permissions from their callers,
and `python -m hivewire.contract --write` renders `docs/asyncapi.yaml` and
`docs/wire.md` from them. A subject that is not here cannot be served.
"""

from __future__ import annotations

from typing import Any

from hivewire.wire import agent as wa
from hivewire.wire import backup as wk
from hivewire.wire import broker as wb
from hivewire.wire import dashboard as wdash
from hivewire.wire import deployer as wd
from hivewire.wire import hosts as wh
from hivewire.wire.common import Empty, Ok
from hivewire.wire.op import Caller, Kind, Op, Service, event, find, request

AGENT, MANAGER, OPERATOR = Caller.AGENT, Caller.MANAGER, Caller.OPERATOR
BROKER, DEPLOYER, DASHBOARD, HOST = Caller.BROKER, Caller.DEPLOYER, Caller.DASHBOARD, Caller.HOST
BACKUP = Caller.BACKUP
S = Service
A = "agent"  # self_param: the caller's own name fills {agent}

# --- broker: an agent's requests, as itself (hive.broker.<agent>.<verb>) ------------------------
BROKER_SEND = request("send", "hive.broker.{agent}.send", wb.SendRequest, wb.SendReply, S.BROKER,
                      {AGENT, OPERATOR, DEPLOYER}, "Send a message to an agent, `operator` or `all`.", self_param=A)
BROKER_RECV = request("recv", "hive.broker.{agent}.recv", wb.RecvRequest, wb.RecvReply, S.BROKER, {AGENT},
                      "Take the next unread messages (long-poll up to `wait_s`); they stay leased until acked.",
                      self_param=A)
BROKER_ACK = request("ack", "hive.broker.{agent}.ack", wb.AckRequest, wb.AckReply, S.BROKER, {AGENT},
                     "Acknowledge received messages (a message not acked is delivered again).", self_param=A)
BROKER_ASK = request("ask", "hive.broker.{agent}.ask", wb.AskRequest, wb.AskReply, S.BROKER, {AGENT},
                     "Ask another agent or the operator a question (an answer wakes the asker).", self_param=A)
BROKER_ANSWER = request("answer", "hive.broker.{agent}.answer", wb.AnswerRequest, wb.AnswerReply, S.BROKER,
                        {AGENT}, "Answer a question asked of this agent.", self_param=A)
BROKER_LOOSE_ENDS = request("loose_ends", "hive.broker.{agent}.loose_ends", wb.LooseEndsRequest, wb.LooseEnds,
                            S.BROKER, {AGENT}, "This agent's open approvals, questions and reminders.", self_param=A)
BROKER_CANCEL_LOOSE_END = request(
    "cancel_loose_end", "hive.broker.{agent}.cancel_loose_end", wb.CancelLooseEndRequest, wb.CancelLooseEndReply,
    S.BROKER, {AGENT}, "Cancel one of this agent's approvals, questions or reminders.", self_param=A)
BROKER_REMIND = request("remind", "hive.broker.{agent}.remind", wb.RemindRequest, wb.RemindReply, S.BROKER,
                        {AGENT}, "Set a reminder that wakes this agent at a time.", self_param=A)
BROKER_APPROVE = request("approve", "hive.broker.{agent}.approve", wb.ApproveRequest, wb.ApproveReply, S.BROKER,
                         {AGENT}, "Request the operator's approval (a config deploy, a spawn).", self_param=A)
BROKER_COUNTS = request("counts", "hive.broker.{agent}.counts", Empty, wb.CountsReply, S.BROKER, {AGENT},
                        "Unread messages, open questions and pending reminders of this agent.", self_param=A)
BROKER_SPEND = request("spend", "hive.broker.{agent}.spend", Empty, wb.SpendReply, S.BROKER, {AGENT},
                       "This agent's spend against its own and the swarm's budgets.", self_param=A)

# --- broker: the operator's views (hive.operator.<area>.<verb>) --------------------------------
APPROVALS_LIST = request("approvals_list", "hive.operator.approvals.list", wb.ApprovalsListRequest,
                         wb.ApprovalsListReply, S.BROKER, {OPERATOR, DEPLOYER}, "Approvals, pending by default.")
APPROVALS_RESOLVE = request("approvals_resolve", "hive.operator.approvals.resolve", wb.ResolveRequest, wb.Approval,
                            S.BROKER, {OPERATOR}, "Approve or deny an approval.")
QUESTIONS_LIST = request("questions_list", "hive.operator.questions.list", wb.QuestionsListRequest,
                         wb.QuestionsListReply, S.BROKER, {OPERATOR}, "Questions asked of the operator.")
QUESTIONS_ANSWER = request("questions_answer", "hive.operator.questions.answer", wb.OperatorAnswerRequest,
                           wb.AnswerReply, S.BROKER, {OPERATOR}, "Answer a question as the operator.")
MESSAGES_LIST = request("messages_list", "hive.operator.messages.list", wb.MessagesListRequest,
                        wb.MessagesListReply, S.BROKER, {OPERATOR}, "Messages, newest first, a page at a time.")
MESSAGES_SEARCH = request("messages_search", "hive.operator.messages.search", wb.MessagesSearchRequest,
                          wb.MessagesListReply, S.BROKER, {OPERATOR}, "Full-text search of message bodies.")
LEDGER_COSTS = request("ledger_costs", "hive.operator.ledger.costs", wb.CostsRequest, wb.CostsReply, S.BROKER,
                       {OPERATOR}, "Spend grouped by agent, model, UTC day or session (and a second grouping).")
BUDGET_SET = request("budget_set", "hive.operator.ledger.budget_set", wb.BudgetSetRequest, wb.BudgetStatus,
                     S.BROKER, {OPERATOR}, "Set an agent's or the swarm's budget.")
BUDGET_SHOW = request("budget_show", "hive.operator.ledger.budget_show", Empty, wb.BudgetShowReply, S.BROKER,
                      {OPERATOR}, "Every budget with this period's spend.")
BUDGET_CLEAR = request("budget_clear", "hive.operator.ledger.budget_clear", wb.BudgetClearRequest, Ok, S.BROKER,
                       {OPERATOR}, "Remove an agent's or the swarm's budget.")

# --- broker: the deployer keeps its list of known agents (`_registry` is never an agent) -------
REGISTRY_UPSERT = request("registry_upsert", "hive.broker._registry.upsert", wb.RegistryRequest, wb.RegistryReply,
                          S.BROKER, {DEPLOYER}, "Make an agent known (it may receive messages).")
REGISTRY_REMOVE = request("registry_remove", "hive.broker._registry.remove", wb.RegistryRequest, wb.RegistryReply,
                          S.BROKER, {DEPLOYER}, "Forget a destroyed agent.")
REGISTRY_LIST = request("registry_list", "hive.broker._registry.list", Empty, wb.RegistryReply, S.BROKER,
                        {DEPLOYER}, "Every known agent.")

# --- broker: events ---------------------------------------------------------------------------
WAKE = event("wake", "hive.agent.{agent}.wake", wb.Wake, S.BROKER, {AGENT},
             "Something is waiting for the agent (a message, a reminder, an answer, an approval).", self_param=A)
BROKER_CHANGED = event("changed", "hive.broker.changed", wb.Changed, S.BROKER, {DEPLOYER, DASHBOARD, OPERATOR},
                       "A row of broker.sqlite (or the ledger) changed: table, id, insert|update|delete.")

# --- harness: one agent's controls (hive.agent.<agent>.ctl.<verb>) ----------------------------
_CTL_CALLERS = {OPERATOR}
CTL_STATE = request("state", "hive.agent.{agent}.ctl.state", Empty, wa.AgentState, S.HARNESS,
                    {OPERATOR, DEPLOYER}, "The agent's status, turn state, model, context and cost.")
CTL_HISTORY = request("history", "hive.agent.{agent}.ctl.history", wa.HistoryRequest, wa.HistoryReply, S.HARNESS,
                      _CTL_CALLERS, "The agent's recent LiveEvents, a page at a time.")
CTL_MODEL = request("model", "hive.agent.{agent}.ctl.model", wa.ModelRequest, wa.AgentState, S.HARNESS,
                    _CTL_CALLERS, "Switch the model for the next turns.")
CTL_COMPACT = request("compact", "hive.agent.{agent}.ctl.compact", Empty, Ok, S.HARNESS, _CTL_CALLERS,
                      "Compact the conversation before the next turn.")
CTL_NEW_SESSION = request("new_session", "hive.agent.{agent}.ctl.new_session", Empty, Ok, S.HARNESS,
                          _CTL_CALLERS, "Start the next turn in a new CLI session.")
CTL_CANCEL = request("cancel", "hive.agent.{agent}.ctl.cancel", Empty, Ok, S.HARNESS, _CTL_CALLERS,
                     "Cancel the running turn.")
CTL_PROMPT = request("prompt", "hive.agent.{agent}.ctl.prompt", wa.PromptRequest, Ok, S.HARNESS, _CTL_CALLERS,
                     "Run a turn with the operator's text.")
CTL_LOGIN = request("login", "hive.agent.{agent}.ctl.login", wa.LoginRequest, wa.AgentState, S.HARNESS,
                    _CTL_CALLERS, "Log the agent CLI in: start (login_url in the reply), submit a code, cancel.")
CTL_RESUME = request("resume", "hive.agent.{agent}.ctl.resume", Empty, Ok, S.HARNESS, _CTL_CALLERS,
                     "Lift a runaway park.")

# --- harness: events, published under the agent's own name -------------------------------------
EVENTS = event("events", "hive.agent.{agent}.events", wa.LiveEvent, S.HARNESS, {DASHBOARD, OPERATOR},
               "One LiveEvent of the agent's turns (text, tool calls, notes, errors).")
TURNS = event("turns", "hive.agent.{agent}.turns", wa.TurnStats, S.HARNESS, {DASHBOARD, DEPLOYER, OPERATOR},
              "A finished turn's tokens, cost and duration.")
LEDGER = event("ledger", "hive.agent.{agent}.ledger", wa.TurnStats, S.HARNESS, set(),
               "The same turn row for the HIVE_LEDGER JetStream stream (Nats-Msg-Id: turn_id), which the "
               "broker's ledger consumes.")
PRESENCE = event("presence", "hive.agent.{agent}.presence", wa.Presence, S.HARNESS,
                 {BROKER, DEPLOYER, DASHBOARD, OPERATOR}, "The agent's heartbeat: idle, busy, waiting, offline.")
TYPING = event("typing", "hive.agent.{agent}.typing", wa.Typing, S.HARNESS, {DASHBOARD, OPERATOR},
               "Partial assistant text as it streams (coalesced, never stored).")

# --- deployer: agents (hive.deployer.<verb>) ---------------------------------------------------
_MGR = {OPERATOR, MANAGER}
DEPLOYER_LIST = request("list", "hive.deployer.list", Empty, wd.AgentList, S.DEPLOYER, _MGR, "Every agent.")
DEPLOYER_SPAWN = request("spawn", "hive.deployer.spawn", wd.SpawnRequest, wd.AgentInfo, S.DEPLOYER, {OPERATOR},
                         "Create an agent and start it.")
DEPLOYER_DESTROY = request("destroy", "hive.deployer.destroy", wd.DestroyRequest, wd.AgentInfo, S.DEPLOYER,
                           {OPERATOR}, "Stop an agent and archive (or purge) it.")
DEPLOYER_REVIVE = request("revive", "hive.deployer.revive", wd.NameRequest, wd.AgentInfo, S.DEPLOYER, {OPERATOR},
                          "Bring a destroyed agent back from its archive.")
DEPLOYER_START = request("start", "hive.deployer.start", wd.NameRequest, wd.AgentInfo, S.DEPLOYER, _MGR,
                         "Start a stopped agent.")
DEPLOYER_STOP = request("stop", "hive.deployer.stop", wd.NameRequest, wd.AgentInfo, S.DEPLOYER, {OPERATOR},
                        "Stop an agent (it stays stopped).")
DEPLOYER_RESTART = request("restart", "hive.deployer.restart", wd.NameRequest, wd.AgentInfo, S.DEPLOYER, _MGR,
                           "Stop and start an agent.")
DEPLOYER_KILL = request("kill", "hive.deployer.kill", wd.NameRequest, wd.AgentInfo, S.DEPLOYER, _MGR,
                        "SIGKILL an agent's harness (the crash watch restarts it).")
DEPLOYER_REBUILD = request("rebuild", "hive.deployer.rebuild", wd.NameRequest, wd.AgentInfo, S.DEPLOYER,
                           {OPERATOR}, "Rebuild an agent from its deployed config and restart it.")
DEPLOYER_INIT_CONFIG = request("init_config", "hive.deployer.init_config", wd.NameRequest, wd.PathReply,
                               S.DEPLOYER, {OPERATOR}, "Seed an agent's config repo; returns its path.")
DEPLOYER_PROPOSE = request("propose", "hive.deployer.propose", wd.DeployRequest, wd.DeployReply, S.DEPLOYER,
                           {OPERATOR}, "Propose a config commit for deploy (an approval).")
DEPLOYER_APPROVE = request("approve", "hive.deployer.approve", wd.DeployRequest, wd.DeployReply, S.DEPLOYER,
                           {OPERATOR}, "Deploy an approved proposal.")
DEPLOYER_DENY = request("deny", "hive.deployer.deny", wd.DeployRequest, wd.DeployReply, S.DEPLOYER, {OPERATOR},
                        "Deny a proposal.")
DEPLOYER_EXPORT = request("export", "hive.deployer.export", wd.ExportRequest, wd.ArchiveReply, S.DEPLOYER,
                          {OPERATOR}, "Write an agent's archive to a file on the deployer's host.")
DEPLOYER_IMPORT = request("import", "hive.deployer.import", wd.ImportRequest, wd.AgentInfo, S.DEPLOYER,
                          {OPERATOR}, "Create an agent from an archive file on the deployer's host.")
DEPLOYER_HISTORY = request("history", "hive.deployer.history", wd.AgentHistoryRequest, wa.HistoryReply,
                           S.DEPLOYER, {OPERATOR}, "An agent's LiveEvents read from its files (also when it is dead).")
DEPLOYER_TURN_STATS = request("turn_stats", "hive.deployer.turn_stats", wd.TurnStatsRequest, wd.TurnStatsReply,
                              S.DEPLOYER, {OPERATOR}, "An agent's recent turn rows read from its files.")

# --- deployer: sessions (hive.session.<verb>) -------------------------------------------------
SESSION_CREATE = request("session_create", "hive.session.create", wd.SessionCreate, wd.SessionInfo, S.DEPLOYER,
                         {OPERATOR}, "Create a one-off session (a prompt run once, outputs kept).")
SESSION_START = request("session_start", "hive.session.start", wd.SessionRef, wd.StatusReply, S.DEPLOYER,
                        {OPERATOR}, "Start a created session.")
SESSION_STATUS = request("session_status", "hive.session.status", wd.SessionRef, wd.StatusReply, S.DEPLOYER,
                         {OPERATOR}, "A session's status.")
SESSION_GET = request("session_get", "hive.session.get", wd.SessionRef, wd.SessionInfo, S.DEPLOYER, {OPERATOR},
                      "One session.")
SESSION_LIST = request("session_list", "hive.session.list", Empty, wd.SessionList, S.DEPLOYER, {OPERATOR},
                       "Every session.")
SESSION_OUTPUT_DIR = request("session_output_dir", "hive.session.output_dir", wd.SessionRef, wd.PathReply,
                             S.DEPLOYER, {OPERATOR}, "Where a session's outputs are.")
SESSION_LOG = request("session_log", "hive.session.log", wd.SessionRef, wd.PathReply, S.DEPLOYER, {OPERATOR},
                      "Where a session's log is.")
SESSION_CLEANUP = request("session_cleanup", "hive.session.cleanup", wd.SessionCleanup, wd.CleanupReply,
                          S.DEPLOYER, {OPERATOR}, "Remove finished sessions (keeping their outputs).")

# --- deployer: the hub's hosts (issue 26) -----------------------------------------------------
HOSTS_ADD = request("hosts_add", "hive.hosts.add", wh.HostAddRequest, wh.HostAddReply, S.DEPLOYER, {OPERATOR},
                    "Invite a host: returns its one-time join token.")
HOSTS_REMOVE = request("hosts_remove", "hive.hosts.remove", wh.HostNameRequest, wh.HostInfo, S.DEPLOYER,
                       {OPERATOR}, "Remove a host and revoke its NATS user.")
HOSTS_LIST = request("hosts_list", "hive.hosts.list", wh.HostNameRequest, wh.HostList, S.DEPLOYER,
                     {OPERATOR, DASHBOARD, BACKUP},
                     "Every host (or one), with its agents and last heartbeat.")
HOSTS_MOVE = request("hosts_move", "hive.hosts.move", wh.MoveRequest, wd.AgentInfo, S.DEPLOYER, {OPERATOR},
                     "Move a stopped agent's state/ and creds/ to another host, checked by hash.")
HOST_CREDS = request("hosts_creds", "hive.host.{host}.up.creds", wh.CredsRequest, wh.CredsReply, S.DEPLOYER,
                     {HOST}, "An agent host fetches the NATS credentials of an agent placed on it.",
                     self_param="host")

# --- deployer: events -------------------------------------------------------------------------
DEPLOYER_STATE = event("state", "hive.deployer.state.{agent}", wd.AgentInfo, S.DEPLOYER,
                       {BROKER, DASHBOARD, AGENT, OPERATOR}, "An agent's lifecycle changed.", self_param=A)
DEPLOYER_DEPLOY = event("deploy", "hive.deployer.deploy.{agent}", wd.DeployEvent, S.DEPLOYER, {BROKER, OPERATOR},
                        "A deploy of the agent ended: deployed, failed or denied (the broker resolves its approval).")
SESSION_LEDGER = event("session_ledger", "hive.session.ledger", wa.TurnStats, S.DEPLOYER, set(),
                       "A finished session's turn row for the HIVE_LEDGER stream, which the broker's ledger consumes.")

# --- agent host (issue 26): the deployer's requests, its reports -------------------------------
HOST_START = request("start", "hive.host.{host}.start", wh.HostStartRequest, wh.HostAgentReply, S.AGENTHOST,
                     {DEPLOYER}, "Start an agent placed on this host (idempotent).")
HOST_STOP = request("stop", "hive.host.{host}.stop", wh.HostStopRequest, wh.HostAgentReply, S.AGENTHOST,
                    {DEPLOYER}, "Stop an agent on this host.")
HOST_PACK = request("pack", "hive.host.{host}.pack", wh.PackRequest, wh.PackReply, S.AGENTHOST,
                    {DEPLOYER, BACKUP}, "Pack an agent's state/ and creds/: stopped for a move, live for a backup "
                    "(the files stay until dropped).")
HOST_READ = request("read", "hive.host.{host}.read", wh.ChunkRequest, wh.Chunk, S.AGENTHOST, {DEPLOYER, BACKUP},
                    "One chunk of a packed move or backup copy.")
HOST_WRITE = request("write", "hive.host.{host}.write", wh.Chunk, Ok, S.AGENTHOST, {DEPLOYER},
                     "Append one chunk of a move to this host's copy.")
HOST_COMMIT = request("commit", "hive.host.{host}.commit", wh.CommitRequest, wh.CommitReply, S.AGENTHOST,
                      {DEPLOYER}, "Check a received move (size, sha256, file tree) and install it.")
HOST_DROP = request("drop", "hive.host.{host}.drop", wh.DropRequest, Ok, S.AGENTHOST, {DEPLOYER, BACKUP},
                    "Forget a move's archive; with files, the agent's files on this host (the move is done).")
HOST_HISTORY = request("host_history", "hive.host.{host}.history", wd.AgentHistoryRequest, wa.HistoryReply,
                       S.AGENTHOST, {DEPLOYER}, "An agent's events from its events.sqlite on this host (read-only).")
HOST_TURN_STATS = request("host_turn_stats", "hive.host.{host}.turn_stats", wd.TurnStatsRequest, wd.TurnStatsReply,
                          S.AGENTHOST, {DEPLOYER}, "An agent's newest turn-stats rows on this host (read-only).")
HOST_SESSION_START = request("host_session_start", "hive.host.{host}.session_start", wh.HostSessionStart,
                             wh.HostSessionStarted, S.AGENTHOST, {DEPLOYER},
                             "Run a session placed on this host, confined as on the core host.")
HOST_SESSION_READ = request("host_session_read", "hive.host.{host}.session_read", wh.HostSessionRef,
                            wh.HostSessionOutput, S.AGENTHOST, {DEPLOYER},
                            "A session's output from an offset (waits briefly for more), and its exit code once done.")
HOST_SESSION_PACK = request("host_session_pack", "hive.host.{host}.session_pack", wh.HostSessionRef, wh.PackReply,
                            S.AGENTHOST, {DEPLOYER}, "Pack a finished session's output dir (read it with `read`).")
HOST_SESSION_DROP = request("host_session_drop", "hive.host.{host}.session_drop", wh.HostSessionRef, Ok, S.AGENTHOST,
                            {DEPLOYER}, "Delete a session's dirs and packed outputs on this host.")
HOST_HEARTBEAT = event("heartbeat", "hive.host.{host}.up.heartbeat", wh.HostHeartbeat, S.AGENTHOST, {DEPLOYER},
                       "The host's free memory, load, agents and their pids, every HIVE_HOST_HEARTBEAT_S.")

# --- backup -----------------------------------------------------------------------------------
BACKUP_RUN = request("run", "hive.backup.run", wk.RunRequest, wk.Snapshot, S.BACKUP, {OPERATOR},
                     "Take a snapshot now (all classes, or the ones given).")
BACKUP_LIST = request("list", "hive.backup.list", wk.ListRequest, wk.SnapshotList, S.BACKUP, {OPERATOR},
                      "Snapshots of a target.")
BACKUP_VERIFY = request("verify", "hive.backup.verify", wk.VerifyRequest, wk.VerifyReply, S.BACKUP, {OPERATOR},
                        "Check a snapshot's checksums (and its secrets with an identity).")
BACKUP_RESTORE = request("restore", "hive.backup.restore", wk.RestoreRequest, wk.RestoreReply, S.BACKUP,
                         {OPERATOR}, "Restore a snapshot into a directory (or in place).")
BACKUP_PRUNE = request("prune", "hive.backup.prune", wk.PruneRequest, wk.PruneReply, S.BACKUP, {OPERATOR},
                       "Delete snapshots the retention policy no longer keeps.")
BACKUP_DONE = event("done", "hive.backup.done", wk.BackupDone, S.BACKUP, {DASHBOARD, DEPLOYER, OPERATOR},
                    "A backup run ended (ok or not).")
BACKUP_PROGRESS = event("progress", "hive.backup.progress", wk.Progress, S.BACKUP, {OPERATOR, DASHBOARD},
                        "A running backup's step and item counts.")

# --- dashboard --------------------------------------------------------------------------------
DASHBOARD_INFO = request("info", "hive.dashboard.info", Empty, wdash.DashboardInfo, S.DASHBOARD, {OPERATOR},
                         "Where the dashboard is served.")

OPS: tuple[Op[Any, Any], ...] = tuple(v for v in dict(globals()).values() if isinstance(v, Op))


def for_service(service: Service, kind: Kind = Kind.REQUEST) -> tuple[Op[Any, Any], ...]:
    """The ops a service answers (`Kind.EVENT`: publishes), in registry order."""
    return tuple(o for o in OPS if o.service is service and o.kind is kind)


def lookup(subject: str, kind: Kind | None = None) -> Op[Any, Any] | None:
    """The op of a subject (concrete, or with `*` for parameters); None: not in the contract."""
    return find(OPS, subject, kind)


def by_id(op_id: str) -> Op[Any, Any]:
    for o in OPS:
        if o.id == op_id:
            return o
    raise KeyError(op_id)


def rights(
    callers: set[Caller], service: Service | None = None, name: str | None = None,
) -> tuple[list[str], list[str]]:
    """The subjects a NATS user may publish and subscribe to under the contract.

    `callers`: the roles it calls (and listens) as; `service`: the service it runs, if
    any; `name`: its own name (an agent's, a host's), which fills the `self_param` of
    what it calls as `Caller.AGENT`/`Caller.HOST` and the `Service.binds` parameter of
    what it serves and publishes; the manager and the operator call as themselves (the
    operator sends as `operator`). Parameters left open are `*`. In registry order,
    without repeats: (publish, subscribe).
    """
    pub: dict[str, None] = {}
    sub: dict[str, None] = {}
    for o in OPS:
        if service is not None and o.service is service:
            params = {service.binds: name} if service.binds and name else {}
            (pub if o.kind is Kind.EVENT else sub)[o.fill(**params)] = None
        for c in callers & o.callers:
            named = c in (Caller.AGENT, Caller.HOST)
            if named and not name:
                raise ValueError(f"{c.value} needs its name")
            # a listener hears only its own when it is an agent or a host; the operator hears all
            own = name if named else (c.identity if o.kind is Kind.REQUEST else None)
            params = {o.self_param: own} if o.self_param and own else {}
            (sub if o.kind is Kind.EVENT else pub)[o.fill(**params)] = None
    return list(pub), list(sub)
