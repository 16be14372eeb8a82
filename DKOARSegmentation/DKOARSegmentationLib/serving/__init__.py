"""What a server of dkoar accepts from its clients (the browser station today): who may connect
(``access``) and which files a client may name (``paths``)."""
