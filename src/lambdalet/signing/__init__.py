"""Code signing: lambdalet's own signing profiles (a small AWS Signer), detached signatures carried
inside the zip, and the deployment-time verification Lambda's code signing configs ask for.

    package.py     what is signed (a digest of the unpacked tree) and where the signature travels
    signature.py   the signature document and the algorithms (Ed25519, ECDSA P-384/SHA-384)
    profiles.py    profiles, versions (sealed private keys), signing jobs, revocation
    verify.py      integrity vs. untrusted-artifact checks at deployment
    tables.py      the tables (migration 0010_code_signing)
    cli.py         `lambdalet signer ...`

The Lambda operations on code signing configs live in services/code_signing.py.
"""
