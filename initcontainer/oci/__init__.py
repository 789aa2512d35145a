"""oci:// packages: the registry client and what it needs (standard library only).

`reference` rules live in `initcontainer.contract` (the webhook validates with them);
here: credentials (`keyring`), auth challenges and tokens (`auth`), manifests and
media types (`manifest`), whiteouts (`layers`), and the registry client (`client`).
"""
