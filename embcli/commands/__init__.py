"""One thin module per subcommand: parse options, call the core, write the stream."""
