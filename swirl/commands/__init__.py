"""One module per ``swirl`` subcommand (see ``swirl.cli``)."""
