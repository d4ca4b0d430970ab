"""Deployment package (zip) validation."""
from lambdalet.codepkg.zipcheck import (UNZIP_FAILED, UNZIPPED_LIMIT, ZIPPED_UPLOAD_LIMIT, PackageInfo, ZipLimits,
                                        check_zipped_size, inspect_zip)

__all__ = ["PackageInfo", "UNZIPPED_LIMIT", "UNZIP_FAILED", "ZIPPED_UPLOAD_LIMIT", "ZipLimits", "check_zipped_size",
           "inspect_zip"]
