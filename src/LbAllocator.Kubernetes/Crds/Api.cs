namespace LbAllocator.Kubernetes.Crds;

public static class Api
{
    public const string Group = "lballocator.io";
    public const string Version = "v1alpha1";
    public const string GroupVersion = Group + "/" + Version;
}
