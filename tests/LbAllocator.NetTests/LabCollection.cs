namespace LbAllocator.NetTests;

/// <summary>All network tests share one lab (namespaces, API server, controller, three speakers) and run one after another.</summary>
[CollectionDefinition(Name)]
public sealed class LabCollection : ICollectionFixture<Lab>
{
    public const string Name = "lab";
}
