"""The configuration files of the embedded OpenStack (``str.format`` templates, one per service).

Every service listens on 127.0.0.1 only, on a port chosen at start; every password is generated at start
(``EmbeddedOpenStack``) and lives only in these files, inside the cloud's private folder.  What the stand-in
declares as its own (the scheduler's filters, the quotas, the fake hypervisor) is recorded in the evidence.
"""

from __future__ import annotations

PY = "/usr/bin/python3"
UWSGI = "/usr/bin/uwsgi-core"
RABBIT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
#: what the embedded cloud is made of (./run installs them when --cp-cloud=embedded-openstack is asked for)
PACKAGES = (
    "python3-keystone",
    "python3-placement",
    "python3-nova",
    "python3-glance",
    "python3-cinder",
    "python3-heat",
    "uwsgi-core",
    "uwsgi-plugin-python3",
    "rabbitmq-server",
)
#: the API paste files, taken from Debian's ``*-common`` packages (unpacked into the cache, never installed)
PASTE = {
    "nova": ("nova-common", "usr/share/nova-common/api-paste.ini", "api-paste.ini"),
    "glance": ("glance-common", "usr/share/glance-common/glance-api-paste.ini", "glance-api-paste.ini"),
    "cinder": ("cinder-common", "usr/share/cinder-common/api-paste.ini", "api-paste.ini"),
    "heat": ("heat-common", "etc/heat/api-paste.ini", "api-paste.ini"),
}
DATABASES = ("keystone", "placement", "nova_api", "nova", "nova_cell0", "glance", "cinder", "heat")
SERVICE_USERS = ("nova", "placement", "glance", "cinder", "heat")
#: the cache's layout; a new value rebuilds it
CACHE_VERSION = 1

COMPUTES = 4
#: host -> (availability zone, rack): two zones by host aggregates, two racks by an aggregate property, the racks
#: across the zones so that a server's rack cannot be told from its zone
LAYOUT = {
    "cp-compute-1": ("az1", "rack-a"),
    "cp-compute-2": ("az1", "rack-b"),
    "cp-compute-3": ("az2", "rack-a"),
    "cp-compute-4": ("az2", "rack-b"),
    "cp-compute-5": ("az1", "rack-a"),
    "cp-compute-6": ("az2", "rack-b"),
}
#: the flavours the stand-in offers: SX-ECS-S3's list (vCPUs, GiB), named cp.<v>c<g>g, and one small one
S3_FLAVOURS = (
    (1, 1), (1, 2), (1, 4), (1, 6), (1, 8), (2, 2), (2, 4), (2, 6), (2, 8), (2, 12), (2, 16), (4, 4), (4, 8),
    (4, 12), (4, 16), (4, 24), (4, 32), (8, 16), (8, 32), (8, 64), (16, 32), (16, 64), (16, 128), (32, 64),
    (32, 128),
)  # fmt: skip
VOLUME_TYPES = {"cp-ssd": "solid-state", "cp-hdd": "spinning disk"}
START_TIMEOUT_S = 180


def flavour_name(vcpus: int, gib: int) -> str:
    return f"cp.{vcpus}c{gib}g"


#: keystonemiddleware / keystoneauth settings shared by every service (a service user in project "service")
AUTH = """\
www_authenticate_uri = {keystone}
auth_url = {keystone}
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = {user}
password = {password}
region_name = RegionOne
"""

KEYSTONE = """\
[DEFAULT]
debug = false
[database]
connection = {db}/keystone
[identity]
# the stand-in hashes passwords with 4 bcrypt rounds (Keystone's default 12 costs ~0.3 s of CPU per login on this
# machine's cores); a login is never inside a timed window
password_hash_rounds = 4
[token]
provider = fernet
expiration = 14400
[fernet_tokens]
key_repository = {folder}/keystone/fernet-keys
[fernet_receipts]
key_repository = {folder}/keystone/fernet-keys
[credential]
key_repository = {folder}/keystone/credential-keys
[oslo_policy]
enforce_scope = false
enforce_new_defaults = false
"""

PLACEMENT = """\
[DEFAULT]
debug = false
[placement_database]
connection = {db}/placement
[api]
auth_strategy = keystone
[keystone_authtoken]
{auth}
"""

#: the scheduler's filters; the anti-affinity cheat (``anti_affinity=False``) is this list without
#: ServerGroupAntiAffinityFilter, the soft anti-affinity weigher's multiplier at 0 and the compute host's late
#: policy check off: a group's policy is stored and shown, and ignored
FILTERS = (
    "AvailabilityZoneFilter",
    "ComputeFilter",
    "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
)

NOVA = """\
[DEFAULT]
debug = false
transport_url = {transport}
state_path = {folder}/nova
my_ip = 127.0.0.1
host = {host}
compute_driver = fake.FakeDriver
heal_instance_info_cache_interval = -1
update_resources_interval = 10
multi_instance_display_name_template = %(name)s%(count)03d
instance_build_timeout = 300
default_availability_zone = {default_az}
default_schedule_zone =
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = {paste}/nova/api-paste.ini
{databases}
[keystone_authtoken]
{auth}
[placement]
{auth}
[glance]
region_name = RegionOne
[neutron]
{auth}
[cinder]
os_region_name = RegionOne
[service_user]
# Cinder lets only Nova detach a volume Nova attached (CVE-2023-2088): Nova sends its service token
send_service_user_token = true
{auth}[scheduler]
discover_hosts_in_cells_interval = 2
workers = 1
[conductor]
workers = 1
[filter_scheduler]
enabled_filters = {filters}
soft_anti_affinity_weight_multiplier = {soft_weight}
ram_weight_multiplier = -1.0
[workarounds]
# the anti-affinity cheat also turns off the compute host's late check of the group's policy
disable_group_policy_check_upcall = {no_upcall}
[quota]
instances = {quota_instances}
cores = -1
ram = -1
server_groups = 1000
server_group_members = 1000
[oslo_concurrency]
lock_path = {folder}/nova/lock
[oslo_messaging_notifications]
driver = noop
[oslo_policy]
# Nova's project-scoped defaults (reader, member, admin); the stand-in's overrides, if any, in policy_file
enforce_new_defaults = true
enforce_scope = false
policy_file = {folder}/nova/policy.yaml
[vnc]
enabled = false
[spice]
enabled = false
"""

NOVA_DATABASES = """\
[api_database]
connection = {db}/nova_api
[database]
connection = {db}/nova
"""

GLANCE = """\
[DEFAULT]
debug = false
bind_host = 127.0.0.1
bind_port = {port}
workers = 1
show_image_direct_url = false
[database]
connection = {db}/glance
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = {folder}/glance/images
[os_glance_staging_store]
filesystem_store_datadir = {folder}/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = {folder}/glance/tasks
[keystone_authtoken]
{auth}
[paste_deploy]
flavor = keystone
config_file = {paste}/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = {folder}/glance/lock
[oslo_policy]
enforce_scope = false
enforce_new_defaults = false
"""

CINDER = """\
[DEFAULT]
debug = false
transport_url = {transport}
state_path = {folder}/cinder
my_ip = 127.0.0.1
host = cp-storage
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = {port}
osapi_volume_workers = 1
auth_strategy = keystone
api_paste_config = {paste}/cinder/api-paste.ini
enabled_backends = fast,slow
default_volume_type = cp-ssd
glance_api_servers = {glance}
storage_availability_zone = az1
default_availability_zone = az1
allow_availability_zone_fallback = true
[database]
connection = {db}/cinder
[keystone_authtoken]
{auth}
[nova]
{auth_nova}
[oslo_concurrency]
lock_path = {folder}/cinder/lock
[oslo_messaging_notifications]
driver = noop
[fast]
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fast
[slow]
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = slow
"""

HEAT = """\
[DEFAULT]
debug = false
transport_url = {transport}
heat_metadata_server_url = http://127.0.0.1:{port}
heat_waitcondition_server_url = http://127.0.0.1:{port}/v1/waitcondition
stack_domain_admin = heat_domain_admin
stack_domain_admin_password = {domain_password}
stack_user_domain_name = heat
num_engine_workers = 1
[database]
connection = {db}/heat
[heat_api]
bind_host = 127.0.0.1
bind_port = {port}
workers = 1
[keystone_authtoken]
{auth}
[trustee]
auth_type = password
auth_url = {keystone}
username = heat
password = {password}
user_domain_name = Default
[clients_keystone]
auth_uri = {keystone}
[paste_deploy]
api_paste_config = {paste}/heat/api-paste.ini
[oslo_messaging_notifications]
driver = noop
[oslo_policy]
enforce_scope = false
enforce_new_defaults = false
"""

#: a WSGI application under uWSGI (keystone and placement have no server of their own)
WSGI_SHIM = """\
import os
os.environ.update({env!r})
from {module} import {factory}
application = {factory}()
"""
