"""``streamlit run`` as the browser tests start it, with one addition: SIGUSR1 writes every thread's
Python stack to the server's log (``faulthandler``). When a browser test fails, conftest sends it, so
a page that hangs says where it waits (a database connection, a lock) in the failure's report."""

import faulthandler
import signal

from streamlit.web.cli import main

if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    main(prog_name="streamlit")
