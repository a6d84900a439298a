"""Tools on stored models: fine-tuning from the shell, comparison, export, Lake's runs, the demo."""
