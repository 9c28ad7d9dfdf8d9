# The Debian package (scripts/package): CPack's DEB generator over what `cmake --install` lays out,
# plus the service's files: the configuration as a conffile, the systemd unit, logrotate, docs, and
# the maintainer scripts in packaging/debian/. Library dependencies come from dpkg-shlibdeps; the
# programs the maintainer scripts and the unit call are listed by hand.
install(FILES ${CMAKE_SOURCE_DIR}/packaging/portcullis.yaml DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/portcullis)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/portcullis.service DESTINATION /lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/portcullis.logrotate DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/logrotate.d
        RENAME portcullis)
file(GLOB PC_DOCS ${CMAKE_SOURCE_DIR}/docs/*.md)
list(FILTER PC_DOCS EXCLUDE REGEX "/portcullis\\.8\\.md$")
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${PC_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/grafana DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME portcullis)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Portcullis maintainers <maintainers@portcullis.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "security edge for gRPC")
# CPack adds the summary line and indents the rest.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "Portcullis ends TLS for gRPC and HTTP/2 clients, matches each request's host
to a zone, inspects every call message by message through a chain of plugins (bot scoring, Lua
rules, rate limits, the OWASP Core Rule Set) and forwards it to HTTP/2 origins.
.
This package holds the edge, its plugins and rules, the plugin SDK, a systemd unit and a
logrotate configuration.")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# adduser and openssl: postinst; procps: the unit's ExecReload (kill); init-system-helpers:
# deb-systemd-helper; modsecurity-crs: the shipped configuration's WAF rules.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, openssl, procps, init-system-helpers, modsecurity-crs")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/packaging/debian/conffiles
  ${CMAKE_SOURCE_DIR}/packaging/debian/postinst
  ${CMAKE_SOURCE_DIR}/packaging/debian/prerm
  ${CMAKE_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES ON)
include(CPack)
