"""NATS JetStream: the journal outbox relay, its consumer library and the auditors' mirror
(docs/scale-out.md). The engine never imports this package; the wire format is engine.outbox."""
