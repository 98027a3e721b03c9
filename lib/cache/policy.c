/* placeholder */ typedef int mc__placeholder_policy;
