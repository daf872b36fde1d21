"""A plugin module that exits as it is imported (a dependency check gone wrong), for the registry tests."""

import sys

sys.exit("this plugin needs a newer torch")
