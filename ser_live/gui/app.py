"""Starting the desktop app."""

from __future__ import annotations

import sys
from pathlib import Path


def run_app(
    model_path: Path | None = None,
    open_file: Path | None = None,
    second_opinion: Path | None = None,
    use_second_opinion: bool = False,
) -> int:
    import pyqtgraph as pg
    from PySide6 import QtCore, QtWidgets

    from ser_live.gui.main_window import MainWindow

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("ser-live")
    app.setOrganizationName("ser-live")
    window = MainWindow(
        model_path, second_opinion=second_opinion, use_second_opinion=use_second_opinion
    )
    window.show()
    if open_file is not None:

        def open_when_ready() -> None:
            if window.classifier is not None:
                window.open_recording(open_file)
            elif window.model_error is None:
                QtCore.QTimer.singleShot(200, open_when_ready)

        open_when_ready()
    return app.exec()
