"""Image and layer conversion: the converter child process, config rewrite, disk budget."""
