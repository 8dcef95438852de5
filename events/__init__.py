"""The event store: typed events, their codec and upcasters, append and reads, migrations."""
