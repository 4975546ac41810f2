"""The `medimg` command. Parses, calls the library, prints. Heavy imports happen inside each command's run()."""
