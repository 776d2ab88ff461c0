"""Screens of the app: the runs list, one run, and the modal dialogs."""
